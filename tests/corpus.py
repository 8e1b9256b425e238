"""Generate a small corpus of real documents for the integration tests and the benchmark.

``write_good_corpus`` writes one valid file per supported format (plus Japanese files, a long
Markdown report and a 200-row spreadsheet) and returns, for each file, a "needle" phrase that
occurs in that document's text and nowhere else in the corpus, so a search for the needle must
find exactly that file.

``write_bad_corpus`` writes hostile or broken inputs under ``bad/`` (empty, truncated,
encrypted, malformed, random bytes, a zip bomb, oversize text, FIFO, socket, symlinks) and
returns the catalog status each one is expected to end in ("failed" or "skipped").

Everything is generated locally and deterministically (fixed seeds, fixed dates, reportlab's
``invariant`` mode); no network access. Run ``python tests/corpus.py DIR`` to write both
corpora into DIR and print the mappings.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import email.message
import email.utils
import io
import json
import os
import pathlib
import random
import re
import socket
import sys
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

OUTSIDE_SECRET = "TOPSECRET outside the share"

FIXED_DATE = dt.datetime(2024, 3, 14, 9, 26, 53)
ZIP_DATE = (2024, 3, 14, 9, 26, 52)

NEEDLES: dict[str, str] = {
    "notes.txt": "The zebra valve calibration uses cobalt shims.",
    "guide.md": "Quokka firmware rollback needs a saffron jumper.",
    "page.html": "The walrus turbine hums beside the marzipan gasket.",
    "reports/quarterly.pdf": "Narwhal bearings outlast the tungsten pendulum.",
    "reports/minutes.docx": "The ocelot committee approved the vermilion ladder.",
    "slides/deck.pptx": "Axolotl sensors sleep under the cinnamon antenna.",
    "data/inventory.xlsx": "Pangolin flanges arrive wrapped in lavender foil.",
    "data/shipments.csv": "Ibex couriers deliver the amber sprocket crates.",
    "mail/message.eml": "The tapir invoice mentions a pistachio compressor.",
    "data/config.json": "Meerkat relays prefer the juniper voltage profile.",
    "ja/manual.txt": "溶接ロボットの校正手順",
    "ja/shiftjis.txt": "冷却水ポンプの点検記録",
    "ja/report.pdf": "油圧プレスの安全装置",
    "reports/long.md": "The flamingo auditor measured the quartz drainage spiral.",
    "reports/big_table.xlsx": "Wombat gearboxes require a turquoise lubricant.",
}

LONG_NEEDLE_SECTION = 4  # 1-based section number of reports/long.md holding its needle
BIG_TABLE_ROWS = 200
BIG_TABLE_NEEDLE_ROW = 137  # 1-based data row (spreadsheet row 138, after the header)

_PROSE_TEXT = """
    the a of and to in for with on by from after before project team report schedule budget
    system network server storage backup policy review meeting customer supplier contract
    invoice quality process production maintenance inspection safety training document
    archive folder share access permission user group department office building floor room
    equipment machine tool measurement result analysis summary plan target forecast quarter
    month week increase decrease stable improved delayed completed pending approved
    requested updated checked recorded shipped received weekly annual internal external
    regional central technical general careful new old large small several many each every
    most
"""
_PROSE_WORDS: tuple[str, ...] = tuple(_PROSE_TEXT.split())

_SECTION_TITLES: tuple[str, ...] = (
    "Background",
    "Scope and Method",
    "Observations",
    "Findings",
    "Risks",
    "Recommendations",
)

_JA_MANUAL = (
    "本書は第二工場で使用する機械の取扱説明書です。"
    "作業を始める前に必ず保護具を着用してください。"
    "溶接ロボットの校正手順は毎週月曜日の朝に実施します。"
    "校正の結果は品質管理課へ報告してください。"
    "異常を見つけた場合はすぐに機械を停止して責任者に連絡します。"
)

_JA_SHIFTJIS = (
    "この文書は設備保全係の作業記録です。"
    "冷却水ポンプの点検記録を毎月作成して保管します。"
    "点検では振動と温度と流量を確認します。"
    "交換した部品の番号は台帳に記入してください。"
    "次回の点検予定日は掲示板に書きます。"
)

_JA_PDF_LINES: tuple[str, ...] = (
    "この報告書は製造部の月次報告です。",
    "今月は油圧プレスの安全装置を新しい型に交換しました。",
    "交換作業は予定どおり三日間で完了しました。",
    "来月は配電盤の清掃を計画しています。",
)


# ---------------------------------------------------------------------------------------------
# helpers


def _write_text(path: pathlib.Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def _prepare(root: pathlib.Path, rel: str) -> pathlib.Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _prose(rng: random.Random, n_words: int) -> str:
    """Deterministic filler prose: sentences of 8-16 words drawn from a plain word list."""
    sentences: list[str] = []
    count = 0
    while count < n_words:
        length = rng.randint(8, 16)
        words = [rng.choice(_PROSE_WORDS) for _ in range(length)]
        sentences.append(" ".join(words).capitalize() + ".")
        count += length
    return " ".join(sentences)


def _zipinfo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _normalize_zip(path: pathlib.Path) -> None:
    """Rewrite an Office file with fixed member dates so its bytes are the same on every run."""
    with zipfile.ZipFile(path) as zf:
        members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    stamp = FIXED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            if name == "docProps/core.xml":  # openpyxl stamps "modified" with the time of saving
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + stamp, data)
            zf.writestr(_zipinfo(name), data)


def _reportlab_pdf(pages: list[list[str]], font: str = "Helvetica") -> bytes:
    """A PDF with a text layer: one inner list of lines per page."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=1)
    pdf.setTitle("ShareIndex test document")
    for lines in pages:
        pdf.setFont(font, 12)
        y = A4[1] - 72
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 18
        pdf.showPage()
    pdf.save()
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# good corpus, one writer per format


def _write_txt(root: pathlib.Path, rel: str) -> None:
    text = (
        "Workshop notes, building C.\n\n"
        "The press line was inspected on Tuesday and no defects were recorded.\n"
        f"{NEEDLES[rel]}\n"
        "Next inspection is planned for the first week of the next month.\n"
    )
    _write_text(root / rel, text)


def _write_md(root: pathlib.Path, rel: str) -> None:
    text = (
        "# Device Guide\n\n"
        "This guide explains how the field devices are installed and serviced.\n\n"
        "## Installation\n\n"
        "Mount the device on the rail and connect the supply before the data cable.\n\n"
        "## Recovery\n\n"
        f"If an update fails, restore the previous image. {NEEDLES[rel]}\n\n"
        "## Support\n\n"
        "Open a ticket with the service desk and attach the device log.\n"
    )
    _write_text(root / rel, text)


def _write_html(root: pathlib.Path, rel: str) -> None:
    text = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Plant Status</title></head>
<body>
<h1>Plant Status</h1>
<p>The cooling circuit ran within limits for the whole week.</p>
<p>{NEEDLES[rel]}</p>
<table>
  <tr><th>Unit</th><th>Hours</th><th>State</th></tr>
  <tr><td>Pump A</td><td>168</td><td>running</td></tr>
  <tr><td>Pump B</td><td>12</td><td>standby</td></tr>
  <tr><td>Chiller</td><td>160</td><td>running</td></tr>
</table>
</body>
</html>
"""
    _write_text(root / rel, text)


def _write_pdf(root: pathlib.Path, rel: str) -> None:
    pages = [
        [
            "Quarterly Engineering Report",
            "Page one covers the production volumes.",
            "Output rose slightly compared with the previous quarter.",
        ],
        [
            "Maintenance",
            "Page two covers the maintenance work.",
            NEEDLES[rel],
            "No unplanned stops were recorded.",
        ],
    ]
    _prepare(root, rel).write_bytes(_reportlab_pdf(pages))


def _write_docx(root: pathlib.Path, rel: str) -> None:
    import docx

    doc = docx.Document()
    doc.core_properties.created = FIXED_DATE
    doc.core_properties.modified = FIXED_DATE
    doc.add_heading("Committee Minutes", level=1)
    doc.add_paragraph("The committee met in room 4 to review the open purchase requests.")
    doc.add_paragraph(NEEDLES[rel])
    table = doc.add_table(rows=1, cols=3)
    for cell, title in zip(table.rows[0].cells, ("Item", "Owner", "Due"), strict=True):
        cell.text = title
    for row in (("Ladder", "Facilities", "May"), ("Scaffold", "Safety", "June")):
        for cell, value in zip(table.add_row().cells, row, strict=True):
            cell.text = value
    path = _prepare(root, rel)
    doc.save(str(path))
    _normalize_zip(path)


def _write_pptx(root: pathlib.Path, rel: str) -> None:
    from pptx import Presentation

    prs = Presentation()
    prs.core_properties.created = FIXED_DATE
    prs.core_properties.modified = FIXED_DATE
    layout = prs.slide_layouts[1]  # title and content
    slides = (
        ("Sensor Programme", "Overview of the new sensor rollout in hall two."),
        ("Power Saving", NEEDLES[rel]),
    )
    for title, body in slides:
        slide = prs.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    path = _prepare(root, rel)
    prs.save(str(path))
    _normalize_zip(path)


def _new_workbook(title: str) -> tuple[Workbook, Worksheet]:
    from openpyxl import Workbook

    wb = Workbook()
    wb.properties.created = FIXED_DATE
    wb.properties.modified = FIXED_DATE
    ws = wb.active
    assert ws is not None
    ws.title = title
    return wb, ws


def _write_xlsx(root: pathlib.Path, rel: str) -> None:
    wb, ws = _new_workbook("Inventory")
    rows = [
        ("Part", "Quantity", "Location", "Note"),
        ("Flange DN50", 40, "Shelf 1", "standard stock"),
        ("Flange DN80", 25, "Shelf 2", NEEDLES[rel]),
        ("Gasket 50", 300, "Shelf 3", "standard stock"),
        ("Bolt M12", 1200, "Bin 7", "reorder at 500"),
        ("Nut M12", 1150, "Bin 8", "reorder at 500"),
    ]
    for row in rows:
        ws.append(row)
    path = _prepare(root, rel)
    wb.save(str(path))
    _normalize_zip(path)


def _write_csv(root: pathlib.Path, rel: str) -> None:
    rows = [
        ("shipment", "date", "destination", "remark"),
        ("S-1001", "2024-02-01", "Rotterdam", "on time"),
        ("S-1002", "2024-02-03", "Hamburg", NEEDLES[rel]),
        ("S-1003", "2024-02-07", "Antwerp", "customs hold"),
        ("S-1004", "2024-02-09", "Le Havre", "on time"),
    ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    _write_text(root / rel, buf.getvalue())


def _write_eml(root: pathlib.Path, rel: str) -> None:
    msg = email.message.EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "Bob Example <bob@example.com>"
    msg["Subject"] = "Invoice question for the workshop"
    msg["Date"] = email.utils.format_datetime(FIXED_DATE.replace(tzinfo=dt.UTC))
    msg["Message-ID"] = "<corpus-0001@example.com>"
    msg.set_content(
        "Hello Bob,\n\n"
        "I checked last month's supplier invoice against the order.\n"
        f"{NEEDLES[rel]}\n\n"
        "Could you confirm the amount before Friday?\n\nRegards,\nAlice\n"
    )
    _prepare(root, rel).write_bytes(msg.as_bytes())


def _write_json(root: pathlib.Path, rel: str) -> None:
    data = {
        "site": {"name": "Plant North", "code": "PN-01"},
        "relays": [
            {"id": "R1", "profile": "default", "notes": "factory settings"},
            {"id": "R2", "profile": "custom", "notes": NEEDLES[rel]},
        ],
        "limits": {"voltage": {"min": 210, "max": 240}, "current": {"max": 16}},
    }
    _write_text(root / rel, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _write_ja_manual(root: pathlib.Path, rel: str) -> None:
    assert NEEDLES[rel] in _JA_MANUAL
    _write_text(root / rel, _JA_MANUAL + "\n")


def _write_ja_shiftjis(root: pathlib.Path, rel: str) -> None:
    assert NEEDLES[rel] in _JA_SHIFTJIS
    _write_text(root / rel, _JA_SHIFTJIS + "\r\n", encoding="cp932")


def _write_ja_pdf(root: pathlib.Path, rel: str) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    assert any(NEEDLES[rel] in line for line in _JA_PDF_LINES)
    pdfmetrics.registerFont(UnicodeCIDFont("HeiseiMin-W3"))
    pdf = _reportlab_pdf([list(_JA_PDF_LINES)], font="HeiseiMin-W3")
    _prepare(root, rel).write_bytes(pdf)


def long_markdown() -> str:
    """Six ~300-word sections of deterministic prose; the needle sits in section 4."""
    rng = random.Random(20240314)
    parts = ["# Annual Facilities Review\n"]
    for number, title in enumerate(_SECTION_TITLES, start=1):
        body = _prose(rng, 300)
        if number == LONG_NEEDLE_SECTION:
            cut = len(body) // 2
            cut = body.index(". ", cut) + 2
            body = body[:cut] + NEEDLES["reports/long.md"] + " " + body[cut:]
        parts.append(f"## {number}. {title}\n\n{body}\n")
    return "\n".join(parts)


def _write_long_md(root: pathlib.Path, rel: str) -> None:
    _write_text(root / rel, long_markdown())


def _write_big_table(root: pathlib.Path, rel: str) -> None:
    wb, ws = _new_workbook("Parts")
    ws.append(("Row", "Part", "Supplier", "Quantity", "Comment"))
    rng = random.Random(200)
    suppliers = ("Northwind", "Contoso", "Fabrikam", "Litware", "Tailspin")
    for i in range(1, BIG_TABLE_ROWS + 1):
        comment = NEEDLES[rel] if i == BIG_TABLE_NEEDLE_ROW else f"batch {rng.randint(100, 999)}"
        row = (i, f"Part {i:04d}", rng.choice(suppliers), rng.randint(1, 500), comment)
        ws.append(row)
    path = _prepare(root, rel)
    wb.save(str(path))
    _normalize_zip(path)


_GOOD_WRITERS = {
    "notes.txt": _write_txt,
    "guide.md": _write_md,
    "page.html": _write_html,
    "reports/quarterly.pdf": _write_pdf,
    "reports/minutes.docx": _write_docx,
    "slides/deck.pptx": _write_pptx,
    "data/inventory.xlsx": _write_xlsx,
    "data/shipments.csv": _write_csv,
    "mail/message.eml": _write_eml,
    "data/config.json": _write_json,
    "ja/manual.txt": _write_ja_manual,
    "ja/shiftjis.txt": _write_ja_shiftjis,
    "ja/report.pdf": _write_ja_pdf,
    "reports/long.md": _write_long_md,
    "reports/big_table.xlsx": _write_big_table,
}


def write_good_corpus(root: pathlib.Path) -> dict[str, str]:
    """Write one valid document per format under ``root``; return relpath -> unique needle."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, writer in _GOOD_WRITERS.items():
        writer(root, rel)
    return dict(NEEDLES)


# ---------------------------------------------------------------------------------------------
# bad corpus


def _write_empty(bad: pathlib.Path) -> None:
    (bad / "empty.txt").write_bytes(b"")


def _write_truncated_pdf(bad: pathlib.Path) -> None:
    pages = [[f"Truncated page {n} line {i}" for i in range(30)] for n in range(1, 4)]
    data = _reportlab_pdf(pages)
    (bad / "truncated.pdf").write_bytes(data[: len(data) * 40 // 100])


def _write_encrypted_pdf(bad: pathlib.Path) -> None:
    from pypdf import PdfReader, PdfWriter

    source = _reportlab_pdf([["Confidential salary table, password protected."]])
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    try:
        writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    except Exception:  # AES needs the cryptography package; RC4 is built in
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
        writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    with (bad / "encrypted.pdf").open("wb") as fh:
        writer.write(fh)


def _write_malformed_docx(bad: pathlib.Path) -> None:
    with zipfile.ZipFile(bad / "malformed.docx", "w") as zf:
        zf.writestr(_zipinfo("[Content_Types].xml"), b"<Types><<not xml at all &&& </Typ")


def _write_junk(bad: pathlib.Path) -> None:
    junk = random.Random(7).randbytes(4096)
    for ext in ("pdf", "docx", "pptx", "xlsx"):
        (bad / f"junk.{ext}").write_bytes(junk)


def _write_binary_txt(bad: pathlib.Path) -> None:
    data = b"\x00\x01\x02\x00" + random.Random(11).randbytes(4096) + b"\x00" * 16
    (bad / "binary.txt").write_bytes(data)


_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    b'officedocument.wordprocessingml.document.main+xml"/></Types>'
)

BOMB_UNCOMPRESSED = 200 * 1024 * 1024


def _write_bomb(bad: pathlib.Path) -> None:
    block = b"A" * (1024 * 1024)
    with zipfile.ZipFile(bad / "bomb.docx", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(_zipinfo("[Content_Types].xml"), _CONTENT_TYPES)
        with zf.open(_zipinfo("word/document.xml"), "w", force_zip64=True) as member:
            for _ in range(BOMB_UNCOMPRESSED // len(block)):
                member.write(block)


def _write_exe(bad: pathlib.Path) -> None:
    (bad / "program.exe").write_bytes(b"MZ\x90\x00" + random.Random(3).randbytes(1020))


def _write_huge(bad: pathlib.Path) -> None:
    line = b"This line pads an oversized text file past the configured size limit.\n"
    (bad / "huge.txt").write_bytes(line * (3 * 1024 * 1024 // len(line) + 1))


def _unlink(path: pathlib.Path) -> pathlib.Path:
    """Remove a leftover special file or link so the corpus can be rewritten in place."""
    path.unlink(missing_ok=True)
    return path


def _write_fifo(bad: pathlib.Path) -> None:
    os.mkfifo(_unlink(bad / "fifo.txt"))


@contextlib.contextmanager
def _cwd(path: pathlib.Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _write_socket(bad: pathlib.Path) -> None:
    path = _unlink(bad / "socket.txt")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        if len(os.fsencode(path)) < 100:
            sock.bind(os.fspath(path))
        else:  # AF_UNIX paths are limited to ~107 bytes; bind a relative name instead
            with _cwd(bad):
                sock.bind(path.name)


def _write_links(root: pathlib.Path, bad: pathlib.Path) -> None:
    secret = root.parent / (root.name + "-secret.txt")
    secret.write_text(OUTSIDE_SECRET + "\n", encoding="utf-8")
    _unlink(bad / "outside.txt").symlink_to(secret.resolve())
    _unlink(bad / "inside_link.txt").symlink_to(pathlib.Path("..") / "notes.txt")


BAD_EXPECTED: dict[str, str] = {
    "bad/empty.txt": "skipped",
    "bad/truncated.pdf": "failed",
    "bad/encrypted.pdf": "failed",
    "bad/malformed.docx": "failed",
    "bad/junk.pdf": "failed",
    "bad/junk.docx": "failed",
    "bad/junk.pptx": "failed",
    "bad/junk.xlsx": "failed",
    "bad/binary.txt": "failed",
    "bad/bomb.docx": "failed",
    "bad/program.exe": "skipped",
    "bad/huge.txt": "failed",
    "bad/fifo.txt": "skipped",
    "bad/socket.txt": "skipped",
    "bad/outside.txt": "skipped",
    "bad/inside_link.txt": "skipped",
}


def write_bad_corpus(root: pathlib.Path) -> dict[str, str]:
    """Write hostile inputs under ``root/bad``; return relpath -> expected catalog status."""
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    for writer in (
        _write_empty,
        _write_truncated_pdf,
        _write_encrypted_pdf,
        _write_malformed_docx,
        _write_junk,
        _write_binary_txt,
        _write_bomb,
        _write_exe,
        _write_huge,
        _write_fifo,
        _write_socket,
    ):
        writer(bad)
    _write_links(root, bad)
    return dict(BAD_EXPECTED)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} DIR", file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1])
    good = write_good_corpus(root)
    bad = write_bad_corpus(root)
    print(json.dumps({"good": good, "bad": bad}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
