"""Office formats the parsers do not read, converted by LibreOffice headless to the modern format
they do: Word, Excel and PowerPoint 97-2003 (and their templates), macro-enabled and template
OOXML, RTF and OpenDocument. Macros are never run (a headless conversion runs none).

Each parse process keeps a LibreOffice profile of its own (``-env:UserInstallation``), made at
its first conversion and reused, so parallel conversions never share one and only the first pays
for creating it. ``soffice.bin`` is started directly (not through its launcher), in a session of
its own, under the parse process's memory limit, with a time limit; it is killed when it runs
over, and when the parse process dies (PR_SET_PDEATHSIG). A file LibreOffice cannot load fails
that document only, with LibreOffice's reason.
"""

from __future__ import annotations

import atexit
import ctypes
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ingest.errors import CorruptDocument, EncryptedDocument, ParseTimeout, UnsupportedType

#: extension -> the format it is converted to (whose parser then reads it)
CONVERTED: dict[str, str] = {
    **dict.fromkeys(("doc", "dot", "docm", "dotm", "dotx", "rtf", "odt", "ott"), "docx"),
    **dict.fromkeys(("xls", "xlt", "xlsm", "xltm", "xltx", "ods", "ots"), "xlsx"),
    **dict.fromkeys(("ppt", "pot", "pps", "pptm", "potm", "potx", "ppsx", "odp", "otp"), "pptx"),
}
_FILTERS = {
    "docx": "docx:MS Word 2007 XML",
    "xlsx": "xlsx:Calc MS Excel 2007 XML",
    "pptx": "pptx:Impress MS PowerPoint 2007 XML",
}
_PR_SET_PDEATHSIG = 1
#: soffice's exit code after it made a new profile: start it again
_RESTART = 81
_profile: Path | None = None


def soffice_binary() -> str | None:
    """``soffice.bin`` of the installed LibreOffice, or None."""
    launcher = shutil.which("soffice") or shutil.which("libreoffice")
    if launcher is None:
        return None
    binary = Path(os.path.realpath(launcher)).with_name("soffice.bin")
    return str(binary) if binary.exists() else None


def _profile_dir() -> Path:
    """This process's LibreOffice profile (removed when the process exits)."""
    global _profile
    if _profile is None or not _profile.exists():
        _profile = Path(tempfile.mkdtemp(prefix=f"shareindex-lo-{os.getpid()}-"))
        atexit.register(shutil.rmtree, _profile, True)
    return _profile


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: what else Office itself saves under the legacy names: RTF, HTML or XML "Office 2003" files,
#: or a misnamed OOXML zip (LibreOffice reads them all)
_OTHER_SIGNATURES = (b"{\\rtf", b"<", b"PK\x03\x04")
#: the stream a compound file of each family must hold
_STREAMS = {
    **dict.fromkeys(("doc", "dot"), ("WordDocument",)),
    **dict.fromkeys(("xls", "xlt"), ("Workbook", "Book")),
    **dict.fromkeys(("ppt", "pot", "pps"), ("PowerPoint Document",)),
}


def check_signature(data: bytes, extension: str) -> None:
    """LibreOffice reads anything it does not recognise as plain text, damaged compound files
    included: a file that is not what its name says is refused here, not indexed as noise; a
    password-protected one is told as such."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if extension == "rtf" and not head.startswith(b"{\\rtf"):
        raise CorruptDocument("not a valid RTF file (no {\\rtf header)")
    if extension not in _STREAMS:
        return
    if head.startswith(_OLE2):
        _check_compound(data, extension)
    elif not head.startswith(_OTHER_SIGNATURES) and (b"\0" in head or not _decodes(head)):
        raise CorruptDocument(f"not a valid .{extension} file (no Office 97-2003 compound "
                              "file, RTF, HTML or XML content)")  # fmt: skip


def _check_compound(data: bytes, extension: str) -> None:
    import msoffcrypto
    import olefile

    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
    except Exception as exc:
        raise CorruptDocument(
            f"not a valid .{extension} file (damaged compound file: {exc})"
        ) from exc
    try:
        if ole.exists("EncryptionInfo"):  # an OOXML file with a password, in its OLE envelope
            raise EncryptedDocument(f"password-protected .{extension} file: it cannot be read "
                                    "without its password")  # fmt: skip
        if not any(ole.exists(stream) for stream in _STREAMS[extension]):
            raise CorruptDocument(f"not a valid .{extension} file (the compound file holds no "
                                  f"{' or '.join(_STREAMS[extension])} stream)")  # fmt: skip
    finally:
        ole.close()
    try:
        encrypted = msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted()
    except Exception:  # a variant msoffcrypto does not know (Word 6/95...): LibreOffice may
        encrypted = False
    if encrypted:
        raise EncryptedDocument(
            f"password-protected .{extension} file: it cannot be read without its password"
        )


def _decodes(head: bytes) -> bool:
    """Text in one of the encodings Office files of Japanese shares use (a character cut by
    the end of ``head`` allowed)."""
    for encoding in ("utf-8", "cp932", "euc_jp"):
        try:
            head.decode(encoding)
            return True
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3 and exc.reason in ("unexpected end of data",
                                                             "incomplete multibyte sequence"):  # fmt: skip
                return True
    return False


def convert(data: bytes, extension: str, timeout_s: float) -> bytes:
    """The bytes of ``data`` (a ``.extension`` file) converted to ``CONVERTED[extension]``."""
    target = CONVERTED[extension]
    check_signature(data, extension)
    binary = soffice_binary()
    if binary is None:
        raise UnsupportedType(f".{extension} files need LibreOffice (soffice), not installed here")
    with tempfile.TemporaryDirectory(prefix="shareindex-convert-") as work:
        source = Path(work) / f"document.{extension}"
        source.write_bytes(data)
        out = Path(work) / "out"
        cmd = [binary, f"-env:UserInstallation={_profile_dir().as_uri()}", "--headless",
               "--invisible", "--nologo", "--norestore", "--nodefault", "--nolockcheck",
               "--convert-to", _FILTERS[target], "--outdir", str(out), str(source)]  # fmt: skip
        deadline = time.monotonic() + timeout_s
        returncode, output = _run(cmd, work, deadline, extension, timeout_s)
        if returncode == _RESTART:  # a new profile was made: soffice asks to be started again
            returncode, output = _run(cmd, work, deadline, extension, timeout_s)
        result = out / f"document.{target}"
        if returncode != 0 or not result.exists():
            raise CorruptDocument(f".{extension} file: LibreOffice could not read it "
                                  f"({_reason(output, returncode)})")  # fmt: skip
        return result.read_bytes()


def _run(cmd: list[str], home: str, deadline: float, extension: str,
         timeout_s: float) -> tuple[int, bytes]:  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_die_with_parent,
                            env={**os.environ, "HOME": home})  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ParseTimeout(
            f"LibreOffice did not convert the .{extension} file within {timeout_s:g} s"
        ) from None
    return proc.returncode, output


def _reason(output: bytes, returncode: int) -> str:
    lines = [ln.strip() for ln in output.decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "rror" in ln] or lines
    if returncode < 0:
        return f"soffice killed by signal {-returncode}"
    return (errors[-1] if errors else f"soffice exit code {returncode}, no output")[:300]
