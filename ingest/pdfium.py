"""pdfium (pypdfium2), one call at a time per process.

pdfium is not thread-safe, not even on different documents: four threads extracting figures gave
tens of thousands of false "Data format error" failures on valid PDFs and, now and then, a heap
corruption that killed the process. The threads-pool worker and the indexer's caption step read
PDFs on several threads, so every use of pypdfium2 in this project happens inside ``pdfium()``:
a process-wide lock around a short stretch of calls, with every object opened in it closed in it
(pypdfium2 otherwise closes objects from the garbage collector, on whatever thread runs it).
Long work on the results (OCR, PNG encoding of copies) happens outside the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ingest.errors import CorruptDocument

_LOCK = threading.RLock()


@contextmanager
def pdfium() -> Iterator[Any]:
    """The ``pypdfium2`` module, held for this thread until the block ends."""
    with _LOCK:
        import pypdfium2

        yield pypdfium2


def open_pdf(data: bytes) -> Any:
    """A ``PdfDocument`` of ``data`` (call inside ``pdfium()``); CorruptDocument if pdfium
    cannot read it."""
    import pypdfium2

    assert _LOCK._is_owned(), "pdfium used outside ingest.pdfium.pdfium()"  # type: ignore[attr-defined]
    try:
        return pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise CorruptDocument(f"not a valid PDF file (pdfium: {exc})") from exc
