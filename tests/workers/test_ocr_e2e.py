"""OCR end to end: ``shareindex sync`` over a share with a scanned PDF and images of text, then
``shareindex search`` for words that exist only in the pixels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from index.cache import SqlContentCache
from tests import scans
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

SCAN_LINES = ("Site inspection, hangar four", "Zeppelin mechanics inspect the saffron rudder.")
PNG_LINES = ("Warehouse ledger", "The falcon ledger lists indigo freight crates.")
JA_LINES = ("設備点検の記録", "冷凍倉庫の温度記録計を校正しました。")
MEMO_LINES = ["Shift handover memo", "The boiler room was inspected this morning."]
PASTED_LINES = ("Nameplate photo", "Gearbox serial marmoset tangerine")


@dataclass
class Synced:
    root: Path
    data: Path
    summary: dict[str, Any]

    def sync(self) -> dict[str, Any]:
        proc = run_cli(
            "sync", "--share", f"scans={self.root}", "--data-dir", str(self.data), "--json"
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def search(self, query: str, k: int = 3) -> list[dict[str, Any]]:
        proc = run_cli("search", query, "--data-dir", str(self.data), "--k", str(k), "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def ocr_rows(self) -> int:
        cache = SqlContentCache(f"sqlite:///{self.data / 'catalog.db'}")
        try:
            return cache.count("ocr")
        finally:
            cache.close()


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Synced:
    font = scans.require_cjk_font()
    base = tmp_path_factory.mktemp("ocr-e2e")
    root = base / "share"
    (root / "scans").mkdir(parents=True)
    (root / "scans" / "hangar.pdf").write_bytes(scans.scanned_pdf([scans.page_scan(SCAN_LINES)]))
    (root / "ledger.png").write_bytes(scans.png_bytes(scans.text_image(PNG_LINES)))
    (root / "ja-scan.png").write_bytes(scans.png_bytes(scans.text_image(JA_LINES, font, size=48)))
    (root / "memo.pdf").write_bytes(
        scans.pdf_with_pasted_scan(MEMO_LINES, scans.text_image(PASTED_LINES))
    )
    (root / "notes.txt").write_text("The canteen opens at eight and closes after the late shift.\n")
    state = Synced(root, base / "data", {})
    state.summary = state.sync()
    return state


def test_scans_and_images_are_indexed_not_skipped(synced: Synced) -> None:
    docs = synced.summary["documents"]
    assert docs["new"] == 5
    assert docs["failed"] == docs["skipped"] == 0


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("zeppelin mechanics saffron rudder", "scans/hangar.pdf"),
        ("falcon ledger indigo freight", "ledger.png"),
        ("冷凍倉庫の温度記録計", "ja-scan.png"),
    ],
)
def test_words_only_in_the_pixels_find_their_document(
    synced: Synced, query: str, path: str
) -> None:
    hits = synced.search(query)
    assert hits, f"no hit for {query!r}"
    assert hits[0]["metadata"]["path"] == path
    assert query.split()[0] in hits[0]["page_content"].lower() or query in hits[0]["page_content"]


def test_the_scanned_page_keeps_its_page_number(synced: Synced) -> None:
    hit = synced.search("zeppelin mechanics saffron rudder", k=1)[0]
    assert hit["metadata"]["page_numbers"] == [1]


def test_a_picture_of_text_on_a_text_page_is_read(synced: Synced) -> None:
    """A mixed page: its text layer is kept, and only the pasted picture (a region) is OCR'd."""
    [hit] = synced.search("marmoset tangerine gearbox serial", k=1)
    meta = hit["metadata"]
    assert meta["path"] == "memo.pdf" and meta["kind"] == "image_caption"
    assert meta["page_numbers"] == [1]
    assert "marmoset tangerine" in hit["page_content"].lower()
    [text] = synced.search("boiler room inspected", k=1)
    assert text["metadata"]["path"] == "memo.pdf" and text["metadata"]["kind"] != "image_caption"


def test_ocr_results_are_cached_by_page_image(synced: Synced) -> None:
    rows = synced.ocr_rows()
    assert rows >= 3  # one per page image read
    # one page added to the scan: only the new page image is new to the cache
    pages = [scans.page_scan(SCAN_LINES), scans.page_scan(["Page two: the walrus hoist is rated."])]
    (synced.root / "scans" / "hangar.pdf").write_bytes(scans.scanned_pdf(pages))
    again = synced.sync()
    assert again["documents"]["changed"] == 1
    assert synced.ocr_rows() == rows + 1
    assert synced.search("walrus hoist rated", k=1)[0]["metadata"]["path"] == "scans/hangar.pdf"
