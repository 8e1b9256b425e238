"""Office 97-2003, RTF, OpenDocument and macro-enabled files, read through LibreOffice headless
(real soffice; the files are made by LibreOffice itself from documents written here)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import nlp_fallback
from ingest.errors import CorruptDocument, DecompressionBomb, ParseTimeout
from ingest.stages.office import CONVERTED
from ingest.stages.parse import FORMATS, ParseOptions, filetype_of, parse_bytes
from tests.helpers import wait_until
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
        parse_bytes(samples["ppt"], "ppt", ParseOptions(convert_timeout_s=0.001))
    assert running() == set()


def test_one_libreoffice_serves_every_conversion_of_a_process(samples: dict[str, bytes]) -> None:
    from ingest.stages import office

    if not office.uno_available():
        pytest.fail("python3-uno is missing (make installs it): LibreOffice would start per file")
    parse_bytes(samples["doc"], "doc", ParseOptions())
    listener = office._running
    assert listener is not None and listener.soffice is not None
    pid, starts = listener.soffice.pid, listener.starts
    for ext in ("xls", "ppt", "rtf", "odt"):
        phrase = SAMPLES[ext][1]
        assert any(phrase in el.text for el in parse_bytes(samples[ext], ext, ParseOptions()))
    assert listener.soffice is not None and listener.soffice.pid == pid
    assert listener.starts == starts  # started once, for all of them


def test_libreoffice_crashing_on_a_file_fails_that_document_and_the_next_converts(
    samples: dict[str, bytes], tmp_path: Path
) -> None:
    import docx

    from ingest.stages import office

    long = docx.Document()
    for i in range(4000):
        long.add_paragraph(f"Paragraph {i} of the long heron maintenance manual.")
    long.save(str(tmp_path / "long.docx"))
    soffice(tmp_path / "profile", "doc", tmp_path / "long.docx", tmp_path)
    source = tmp_path / "long.doc"
    listener = office._listener(office.soffice_binary() or "")
    listener.convert(tmp_path / "long.doc", "docx", "doc", 120)  # running, warm
    soffice_pid = listener.soffice.pid  # type: ignore[union-attr]
    outcome: list[BaseException] = []

    def convert() -> None:
        try:
            listener.convert(source, "docx", "doc", 120)
        except BaseException as exc:  # noqa: BLE001 (handed to the test's thread)
            outcome.append(exc)

    def reading() -> bool:  # LibreOffice holds the file open while it reads it
        fds = Path(f"/proc/{soffice_pid}/fd")
        return any(os.path.realpath(fd) == str(source) for fd in fds.iterdir())

    thread = threading.Thread(target=convert)
    thread.start()
    wait_until(reading, timeout=60, what="LibreOffice reading the document")
    os.kill(soffice_pid, signal.SIGSEGV)  # it crashes under this document
    thread.join(120)
    [error] = outcome
    assert isinstance(error, CorruptDocument)
    assert str(error).startswith(".doc file: LibreOffice crashed reading it (soffice killed by")
    phrase = SAMPLES["doc"][1]  # the next document: LibreOffice started again
    assert any(phrase in el.text for el in parse_bytes(samples["doc"], "doc", ParseOptions()))
    assert listener.soffice is not None and listener.soffice.pid != soffice_pid
