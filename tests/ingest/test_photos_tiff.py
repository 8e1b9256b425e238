"""Multi-page TIFF scans and HEIC/HEIF photos, with the real Tesseract (and, for the layout mode,
the VLM test double): each page read on its own page number, a photo read like a JPEG."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pillow_heif
import pytest
from PIL import Image

from ingest.captions import FIGURE_FILETYPES
from ingest.errors import CorruptImage
from ingest.images import IMAGE_FILETYPES
from ingest.models import Element, SourceFile
from ingest.stages.figures import extract_figures
from ingest.stages.parse import ParseOptions, filetype_of, parse
from ingest.stages.vlm import VlmClient, VlmOptions
from tests import scans
from tests.vlm_double import VlmDouble, image_url

#: one phrase per page; each page a different width, so that the VLM double can tell them apart
PAGES = (
    (1000, "First page about herons."),
    (1100, "Second page about cranes."),
    (1200, "Third page about storks."),
)


def _parse(
    share: Path, name: str, data: bytes, options: ParseOptions | None = None
) -> list[Element]:
    (share / name).write_bytes(data)
    doc = parse(SourceFile("s", str(share), name, 0, 0), options or ParseOptions())
    return list(doc.elements)


def _three_page_tiff() -> bytes:
    first, *rest = (scans.text_image([phrase], width=width) for width, phrase in PAGES)
    buf = io.BytesIO()
    first.save(buf, format="TIFF", save_all=True, append_images=rest, compression="tiff_lzw")
    return buf.getvalue()


def _heic(img: Image.Image) -> bytes:
    """A HEIC photo written by pillow-heif (not registered with Pillow: ingest.images decodes
    HEIC with pi-heif, and the tests must read it that way)."""
    buf = io.BytesIO()
    pillow_heif.from_pillow(img.convert("RGB")).save(buf, format="HEIF", quality=90)
    return buf.getvalue()


def test_every_page_of_a_tiff_is_ocrd_on_its_own_page_number(share: Path) -> None:
    elements = _parse(share, "fax.tif", _three_page_tiff())
    assert [e.page_number for e in elements] == [1, 2, 3]
    for number, (_, phrase) in enumerate(PAGES, start=1):
        assert [e.text for e in elements if e.page_number == number] == [phrase]


def _reply_by_width(body: dict[str, Any]) -> str:
    url = image_url(body)
    width = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size[0]
    phrase = dict(PAGES)[width]
    return f"# Page of {width} pixels\n\n{phrase}\n"


def test_the_layout_mode_transcribes_every_tiff_page_on_its_own_page_number(share: Path) -> None:
    with VlmDouble(reply=_reply_by_width) as vlm:
        client = VlmClient(VlmOptions(url=vlm.url, model="test-vlm", backoff_s=0.01))
        elements = _parse(
            share, "fax.tiff", _three_page_tiff(), ParseOptions(page_transcriber=client)
        )
        assert len(vlm.completions) == 3
    texts = [(e.page_number, e.kind, e.text) for e in elements]
    assert texts == [
        (number, kind, text)
        for number, (width, phrase) in enumerate(PAGES, start=1)
        for kind, text in (("title", f"Page of {width} pixels"), ("text", phrase))
    ]


def test_a_heic_photo_is_read_like_a_jpeg(share: Path) -> None:
    assert filetype_of("DCIM/IMG_0042.HEIC") == filetype_of("x/photo.heif") == "heic"
    assert "heic" in IMAGE_FILETYPES and "heic" in FIGURE_FILETYPES
    data = _heic(scans.text_image(scans.ENGLISH_LINES))
    elements = _parse(share, "IMG_0042.HEIC", data)
    assert "narwhal bearings outlast the tungsten pendulum" in "\n".join(e.text for e in elements)
    assert {e.page_number for e in elements} == {None}  # one picture: no page numbers
    [figure] = extract_figures(data, "heic")  # what the captioner is given
    assert (figure.width, figure.height) == scans.text_image(scans.ENGLISH_LINES).size


def test_a_corrupt_heic_fails_with_its_reason(share: Path) -> None:
    with pytest.raises(CorruptImage, match="not a valid HEIC image"):
        _parse(share, "junk.heic", b"\x00\x00\x00\x18ftypheic" + bytes(200))
    photo = _heic(scans.text_image(["Cut short"]))
    truncated = photo[: photo.find(b"mdat") + 16]  # the header whole, the picture cut off
    with pytest.raises(CorruptImage, match="HEIC image is truncated or damaged"):
        _parse(share, "cut.heif", truncated)
