"""Office formats the parsers do not read, converted by LibreOffice headless to the modern format
they do: Word, Excel and PowerPoint 97-2003 (and their templates), macro-enabled and template
OOXML, RTF and OpenDocument. Macros are never run (a headless conversion runs none).

Each parse process keeps one LibreOffice running, with a profile of its own
(``-env:UserInstallation``), so parallel conversions never share one and only the first
conversion of a process pays for starting it: ``soffice.bin`` listens on a pipe and a small
worker of the system Python (``python3-uno``, ``uno_worker.py``) converts each document through
it (hidden, read-only, macros never run). Both are started directly, in a session of their own,
under the parse process's memory limit, and killed when the parse process dies
(PR_SET_PDEATHSIG). A conversion has a time limit: over it, both are killed (the next document
starts them again). When LibreOffice crashes on a file, that document fails with the signal, and
the next one starts it again. Without ``python3-uno``, each conversion runs ``soffice
--convert-to`` of its own (about a second more per document). A file LibreOffice cannot load
fails that document only, with LibreOffice's reason.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import io
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

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
#: the Python that has LibreOffice's UNO bridge (Debian's python3-uno)
UNO_PYTHON = "/usr/bin/python3"
_WORKER = Path(__file__).with_name("uno_worker.py")
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
        if uno_available():
            return _listener(binary).convert(source, target, extension, timeout_s)
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


_uno: bool | None = None
_running: Listener | None = None


def uno_available() -> bool:
    """The system Python has the UNO bridge (checked once per process)."""
    global _uno
    if _uno is None:
        try:
            _uno = subprocess.run([UNO_PYTHON, "-c", "import uno"], capture_output=True,
                                  timeout=30).returncode == 0  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            _uno = False
    return _uno


def _listener(binary: str) -> Listener:
    global _running
    if _running is None:
        _running = Listener(binary, _profile_dir())
        atexit.register(_running.stop)
    return _running


class Listener:
    """One LibreOffice kept running for this process's conversions, and the UNO worker that
    drives it; started on first use, and again after a crash or a time-out."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.binary = binary
        self.profile = profile
        self.soffice: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.pipe = ""
        #: how many times LibreOffice was started (the bench reports it)
        self.starts = 0

    def convert(self, source: Path, target: str, extension: str, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        out = source.with_name(f"converted.{target}")
        try:
            if self.worker is None or self.worker.poll() is not None:
                self._start(deadline)
            request = {
                "in": str(source),
                "out": str(out),
                "filter": _FILTERS[target].split(":", 1)[1],
            }
            worker = self.worker
            assert worker is not None and worker.stdin is not None
            worker.stdin.write((json.dumps(request) + "\n").encode())
            worker.stdin.flush()
            answer = self._answer(deadline)
        except _TimedOut:
            self.stop()
            raise ParseTimeout(
                f"LibreOffice did not convert the .{extension} file within {timeout_s:g} s"
            ) from None
        except (_Crashed, BrokenPipeError) as exc:
            reason = str(exc) if isinstance(exc, _Crashed) else self._death()
            self.stop()
            raise CorruptDocument(
                f".{extension} file: LibreOffice crashed reading it ({reason})"
            ) from None
        if not answer.get("ok") or not out.exists():
            raise CorruptDocument(f".{extension} file: LibreOffice could not read it "
                                  f"({str(answer.get('error') or 'no output')[:300]})")  # fmt: skip
        return out.read_bytes()

    def _start(self, deadline: float) -> None:
        self.stop()
        self.pipe = f"shareindex-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._start_soffice()
        self.worker = subprocess.Popen(
            [UNO_PYTHON, str(_WORKER), self.pipe], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, bufsize=0, start_new_session=True,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        self._answer(deadline)  # {"ready": true} once connected

    def _start_soffice(self) -> None:
        self.starts += 1
        self.soffice = subprocess.Popen(
            [self.binary, f"-env:UserInstallation={self.profile.as_uri()}", "--headless",
             "--invisible", "--nologo", "--norestore", "--nodefault", "--nolockcheck",
             f"--accept=pipe,name={self.pipe};urp;StarOffice.ComponentContext"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent, env={**os.environ, "HOME": str(self.profile)},
        )  # fmt: skip

    def _answer(self, deadline: float) -> dict[str, Any]:
        """The worker's next answer; raises _TimedOut, or _Crashed when LibreOffice died."""
        assert self.worker is not None and self.soffice is not None
        stdout: BinaryIO = self.worker.stdout  # type: ignore[assignment]
        line = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _TimedOut()
            ready, _, _ = select.select([stdout], [], [], min(remaining, 0.2))
            if ready:
                byte = stdout.read(1)
                if not byte:
                    raise _Crashed(self._death())
                if byte != b"\n":
                    line += byte
                    continue
                return json.loads(line)
            if self.soffice.poll() == _RESTART:  # a new profile was made: start it again
                self._start_soffice()
            elif self.soffice.poll() is not None:
                raise _Crashed(self._death())

    def _death(self) -> str:
        code = self.soffice.poll() if self.soffice else None
        if code is None and self.soffice is not None:
            try:
                code = self.soffice.wait(timeout=2)
            except subprocess.TimeoutExpired:
                return "the connection to it broke"
        if code is not None and code < 0:
            return f"soffice killed by signal {-code}"
        return f"soffice exited with code {code}"

    def stop(self) -> None:
        for proc in (self.worker, self.soffice):
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            if proc is not None:
                proc.wait()
        self.worker = self.soffice = None


class _TimedOut(Exception):
    pass


class _Crashed(Exception):
    pass
