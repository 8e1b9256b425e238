"""Office 97-2003, RTF, OpenDocument and macro-enabled files, read through LibreOffice headless
(real soffice; the files are made by LibreOffice itself from documents written here)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import nlp_fallback
from ingest.errors import CorruptDocument, DecompressionBomb, ParseTimeout
from ingest.stages.office import CONVERTED
from ingest.stages.parse import FORMATS, ParseOptions, filetype_of, parse_bytes
from tests.office import SAMPLES, soffice, write_source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def samples() -> Iterator[dict[str, bytes]]:
    if not shutil.which("soffice"):
        if os.environ.get("CI"):
            pytest.fail("LibreOffice is missing (make installs libreoffice-*-nogui)")
        pytest.skip("needs LibreOffice")
    nlp_fallback.install()
    work = Path(tempfile.mkdtemp(prefix="shareindex-office-test-"))
    try:
        out = {}
        for ext, (kind, phrase) in SAMPLES.items():
            source = work / f"{ext}-source.{kind}"
            write_source(source, kind, phrase)
            soffice(work / "profile", ext, source, work)
            out[ext] = (work / f"{ext}-source.{ext}").read_bytes()
        # macro-enabled Word: a docx whose main part says docm (python-docx refuses it as is)
        docm = work / "m.docm"
        write_source(work / "m.docx", "docx", "The heron gauge reads in kilopascal.")
        soffice(work / "profile", "docm", work / "m.docx", work)
        out["docm"] = docm.read_bytes()
        yield out
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("ext", sorted(SAMPLES))
def test_each_format_is_read_with_its_text(samples: dict[str, bytes], ext: str) -> None:
    elements = parse_bytes(samples[ext], ext, ParseOptions())
    text = "\n".join(e.text for e in elements)
    assert SAMPLES[ext][1] in text, (ext, text)


def test_a_macro_enabled_file_is_read_as_a_document(samples: dict[str, bytes]) -> None:
    elements = parse_bytes(samples["docm"], "docm", ParseOptions())
    assert "The heron gauge reads in kilopascal." in [e.text for e in elements]


def test_the_extensions_are_known_and_tables_and_slides_keep_their_numbers(
    samples: dict[str, bytes],
) -> None:
    for ext in ("doc", "dot", "xls", "xlt", "ppt", "pot", "rtf", "odt", "ods", "odp", "xlsm"):
        assert filetype_of(f"a/b.{ext.upper()}") == ext and ext in CONVERTED and ext in FORMATS
    sheet = parse_bytes(samples["xls"], "xls", ParseOptions())
    assert any(e.kind == "table" and "ヤマセミ工場の月次点検" in e.text for e in sheet)
    slides = parse_bytes(samples["ppt"], "ppt", ParseOptions())
    assert {e.page_number for e in slides if "Osprey" in e.text} == {1}


def test_a_file_that_is_not_what_its_name_says_fails_with_its_reason(
    samples: dict[str, bytes],
) -> None:
    junk = bytes(range(256)) * 20  # binary, no Office signature: LibreOffice would read it as text
    with pytest.raises(CorruptDocument, match=r"not a valid \.doc file"):
        parse_bytes(junk, "doc", ParseOptions())
    with pytest.raises(CorruptDocument, match="not a valid RTF file"):
        parse_bytes(b"plain words", "rtf", ParseOptions())
    # LibreOffice would convert both of these (as text) without an error
    truncated = samples["xls"][:2048]  # the compound file's header, its streams cut off
    with pytest.raises(CorruptDocument, match=r"not a valid \.xls file \(damaged compound file"):
        parse_bytes(truncated, "xls", ParseOptions())
    words = samples["doc"].replace(b"WordDocument".decode().encode("utf-16-le"), b"W\0x\0" * 12)
    with pytest.raises(CorruptDocument, match="holds no WordDocument stream"):
        parse_bytes(words, "doc", ParseOptions())


def test_a_zipped_format_is_checked_for_bombs_before_libreoffice_opens_it(tmp_path: Path) -> None:
    import zipfile

    bomb = tmp_path / "bomb.odt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("content.xml", b"\0" * (20 * 2**20))
    with pytest.raises(DecompressionBomb):
        parse_bytes(bomb.read_bytes(), "odt", ParseOptions(max_uncompressed_bytes=2**20))


def test_a_conversion_over_its_time_limit_is_stopped_and_leaves_nosoffice(
    samples: dict[str, bytes],
) -> None:
    def running() -> set[int]:
        found = set()
        for pid in os.listdir("/proc"):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"soffice.bin" in cmdline and f"shareindex-lo-{os.getpid()}-".encode() in cmdline:
                found.add(int(pid))
        return found

    with pytest.raises(ParseTimeout, match="LibreOffice did not convert the .ppt file within"):
        parse_bytes(samples["ppt"], "ppt", ParseOptions(convert_timeout_s=0.05))
    assert running() == set()
