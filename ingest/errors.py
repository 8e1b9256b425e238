"""The ingest error tree.

``PermanentError``: the input itself is bad; retrying cannot help, the document is recorded as
``failed`` (or ``skipped``) with the message as its reason.
``TransientError``: something outside the document failed (a service, a busy resource); the
document stays pending and is retried.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error a stage raises on purpose."""

    #: catalog status for documents that end with this error
    status = "failed"


class PermanentError(IngestError):
    """Bad input: retrying the same bytes gives the same error."""


class TransientError(IngestError):
    """An outage or a race: the same bytes may succeed later."""


class SkippedDocument(PermanentError):
    """Not an error in the file, just nothing to index (empty, unsupported, special file)."""

    status = "skipped"


class EmptyDocument(SkippedDocument):
    """The file has no bytes, or parsing found no text in it."""


class UnsupportedType(SkippedDocument):
    """No parser handles this file type."""


class NotARegularFile(SkippedDocument):
    """A FIFO, socket, device, directory or symlink: never opened."""


class OutsideShare(SkippedDocument):
    """The path resolves outside its share root (symlink or ``..``): never opened."""


class TooLarge(PermanentError):
    """The file is over the configured size limit."""


class DecompressionBomb(PermanentError):
    """A compressed container (an Office file) would expand past the configured limit."""


class EncryptedDocument(PermanentError):
    """The document is password-protected."""


class CorruptDocument(PermanentError):
    """The bytes are not a valid document of the type its name claims."""


class Unreadable(PermanentError):
    """The file exists but cannot be opened (permissions, I/O error)."""


class ParseTimeout(PermanentError):
    """The parser ran past the per-document time limit and was stopped."""


class ParserCrashed(PermanentError):
    """The parser process died (killed by the memory limit, or a crash in native code)."""


class FileChanged(TransientError):
    """The file changed or vanished while it was being read."""


class CorruptImage(CorruptDocument):
    """Image bytes that cannot be decoded (truncated, wrong format, unreadable header)."""


class OcrUnavailable(TransientError):
    """Tesseract or one of its language packs is missing: the file is fine, the machine is not."""


class OcrIncomplete(TransientError):
    """A long scan ran out of its OCR time budget; the pages read are cached, a retry goes on."""


class OcrFailed(PermanentError):
    """Tesseract ran and failed on this image, or ran past its per-page time limit."""


class VlmUnavailable(TransientError):
    """The VLM server is down, timing out or answering 5xx after the retries: try again later."""


class VlmRejected(PermanentError):
    """The VLM server refused this request (4xx): sending the same image again will not help."""


class PagesNeedGpu(TransientError):
    """The VLM layout mode: the document has pages to transcribe, and this worker does not
    transcribe (a cpu-queue worker); a worker of the gpu queue parses it instead."""
