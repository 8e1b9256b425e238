"""A mixed corpus for the benchmark: a few hundred office documents of realistic length."""

from __future__ import annotations

import io
import random
from pathlib import Path

_WORDS = """
production line maintenance schedule inspection report quality audit supplier contract invoice
budget forecast quarter customer complaint warranty shipment delivery warehouse inventory pallet
forklift conveyor motor bearing seal pump valve pressure temperature vibration sensor alarm
operator shift supervisor safety training procedure checklist approval signature revision
drawing specification tolerance measurement caliper gauge batch lot sample defect scrap rework
cost saving improvement project milestone deadline risk mitigation engineer technician manager
department office meeting minutes agenda decision action owner status completed delayed pending
approved rejected reviewed updated replaced repaired cleaned calibrated tested verified recorded
the a of and to in for with on by from after before during because although while every each
""".split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(9, 22))]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))


def _sections(rng: random.Random, long: bool = False) -> list[tuple[str, list[str]]]:
    """1-4 sections; a long document (a report, a manual) has 20-40."""
    return [
        (
            " ".join(rng.choice(_WORDS) for _ in range(3)).title(),
            [_paragraph(rng) for _ in range(rng.randint(1, 4))],
        )
        for _ in range(rng.randint(20, 40) if long else rng.randint(1, 4))
    ]


def _md(path: Path, rng: random.Random, long: bool = False) -> None:
    path.write_text("\n\n".join(f"## {t}\n\n" + "\n\n".join(ps) for t, ps in _sections(rng, long)))


def _txt(path: Path, rng: random.Random, long: bool = False) -> None:
    path.write_text("\n\n".join(p for _, ps in _sections(rng, long) for p in ps))


def _html(path: Path, rng: random.Random, long: bool = False) -> None:
    body = "".join(
        f"<h2>{t}</h2>" + "".join(f"<p>{p}</p>" for p in ps) for t, ps in _sections(rng, long)
    )
    path.write_text(f"<html><body>{body}</body></html>")


def _docx(path: Path, rng: random.Random, long: bool = False) -> None:
    import docx

    doc = docx.Document()
    for title, paragraphs in _sections(rng, long):
        doc.add_heading(title, level=2)
        for p in paragraphs:
            doc.add_paragraph(p)
    doc.save(str(path))


def _pdf(path: Path, rng: random.Random, long: bool = False) -> None:
    import textwrap

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=1)
    lines = [
        line for _, ps in _sections(rng, long) for p in ps for line in [*textwrap.wrap(p, 90), ""]
    ]
    for start in range(0, len(lines), 40):
        pdf.setFont("Helvetica", 10)
        for i, line in enumerate(lines[start : start + 40]):
            pdf.drawString(60, A4[1] - 60 - 16 * i, line)
        pdf.showPage()
    pdf.save()
    path.write_bytes(buf.getvalue())


def _pptx(path: Path, rng: random.Random, long: bool = False) -> None:
    import pptx

    deck = pptx.Presentation()
    for title, paragraphs in _sections(rng, long):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = "\n".join(paragraphs)
    deck.save(str(path))


def _xlsx(path: Path, rng: random.Random, long: bool = False) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["item", "description", "owner", "status", "quantity"])
    for i in range(rng.randint(10, 60) * (10 if long else 1)):
        ws.append(
            [
                f"IT-{i:04d}",
                _sentence(rng),
                rng.choice(_WORDS),
                rng.choice(_WORDS),
                rng.randint(1, 500),
            ]
        )
    wb.save(str(path))


def _csv(path: Path, rng: random.Random, long: bool = False) -> None:
    rows = ["part,description,supplier,lead_days"]
    rows += [
        f"P-{i:04d},{_sentence(rng)},{rng.choice(_WORDS)},{rng.randint(1, 60)}"
        for i in range(rng.randint(10, 50) * (10 if long else 1))
    ]
    path.write_text("\n".join(rows))


WRITERS = [("md", _md, 25), ("txt", _txt, 15), ("html", _html, 15), ("docx", _docx, 15), ("pdf", _pdf, 15),
           ("pptx", _pptx, 5), ("xlsx", _xlsx, 5), ("csv", _csv, 5)]  # fmt: skip


def write_mixed_corpus(
    root: Path, n_docs: int, seed: int = 42, long_every: int = 0, interleave: bool = False
) -> dict[str, int]:
    """``n_docs`` documents in folders of 25, formats in fixed proportions; returns counts by format.

    With ``long_every`` = N, every Nth document is about ten times longer (tens of KB of text).
    ``interleave``: the formats mixed in their proportions from the first document on (a small
    corpus has every format), instead of in runs of each.
    """
    rng = random.Random(seed)
    kinds = [(ext, fn) for ext, fn, weight in WRITERS for _ in range(weight)]
    if interleave:
        slots = [((j + 0.5) / weight, ext, fn) for ext, fn, weight in WRITERS for j in range(weight)]
        kinds = [(ext, fn) for _, ext, fn in sorted(slots, key=lambda s: s[0])]
    counts: dict[str, int] = {}
    for i in range(n_docs):
        ext, fn = kinds[i % len(kinds)]
        folder = root / f"dept{i // 25:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        fn(folder / f"doc{i:04d}.{ext}", rng, long_every > 0 and i % long_every == long_every - 1)
        counts[ext] = counts.get(ext, 0) + 1
    return counts
