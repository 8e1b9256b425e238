"""Office files for the tests, made by LibreOffice itself from documents written here."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: extension -> (made from, the phrase only that file holds)
SAMPLES = {
    "doc": ("docx", "不合格品はカワセミ倉庫の赤い棚に隔離する。"),
    "rtf": ("docx", "The lamprey valve is greased every spring."),
    "odt": ("docx", "The marten filter is rinsed after each batch."),
    "xls": ("xlsx", "ヤマセミ工場の月次点検"),
    "ods": ("xlsx", "Weasel pump pressure log"),
    "ppt": ("pptx", "Osprey line restart checklist"),
    "odp": ("pptx", "Badger conveyor safety briefing"),
}


def write_source(path: Path, kind: str, phrase: str) -> None:
    """A docx, xlsx or pptx holding ``phrase``."""
    if kind == "docx":
        import docx

        d = docx.Document()
        d.add_heading("点検記録", 1)
        d.add_paragraph(phrase)
        d.save(str(path))
    elif kind == "xlsx":
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(["item", "value"])
        ws.append([phrase, 42])
        wb.save(str(path))
    else:
        from pptx import Presentation

        p = Presentation()
        slide = p.slides.add_slide(p.slide_layouts[1])
        slide.shapes.title.text = phrase
        slide.placeholders[1].text = "Step one: stop the line."
        p.save(str(path))


def soffice(profile: Path, target: str, source: Path, out: Path) -> None:
    """``source`` converted to the format ``target`` into ``out`` (LibreOffice headless)."""
    subprocess.run(["soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless",
                    "--convert-to", target, "--outdir", str(out), str(source)],
                   check=True, capture_output=True, timeout=180)  # fmt: skip
