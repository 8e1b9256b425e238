"""The captions pass: after a batch's text is committed (searchable at once), each document with
figures is captioned and OCR'd (``ingest.captions``: the VLM and Tesseract, through the content
cache) and written again with its captions appended, at the same version, reusing its text's
vectors. The VLM down: the captions wait (``pending``), the text does not."""

from __future__ import annotations

import logging

from index.catalog import Catalog
from ingest.captions import FIGURE_FILETYPES, FigureCaptioner
from ingest.errors import FileChanged, IngestError, TransientError
from ingest.models import PreparedDocument
from workers.sync.commit import DocumentCommitter
from workers.sync.embedding import ReusingEmbedder
from workers.sync.report import SyncReport
from workers.sync.work import WorkItem

log = logging.getLogger(__name__)


def has_figures(doc: PreparedDocument) -> bool:
    return doc.parsed.filetype in FIGURE_FILETYPES


class CaptionPass:
    def __init__(
        self, figures: FigureCaptioner | None, catalog: Catalog, embedding: ReusingEmbedder,
        committer: DocumentCommitter, contain_write_errors: bool = True,
    ) -> None:  # fmt: skip
        #: None: captions and figure OCR are off (recorded as "off")
        self.figures = figures
        self.catalog = catalog
        self.embedding = embedding
        self.committer = committer
        self.contain_write_errors = contain_write_errors

    def mark(self, item: WorkItem, doc: PreparedDocument) -> None:
        """Durable before the captions run: a failure from here has them redone later."""
        if has_figures(doc):
            self.catalog.set_captions(item.doc_id, "pending" if self.figures else "off")

    def run(self, item: WorkItem, doc: PreparedDocument, report: SyncReport) -> None:
        """Write the document again with its figures' captions appended (same version)."""
        if self.figures is None or not has_figures(doc):
            return
        status: str
        try:
            captions, status = self.figures.run(doc)
            if captions:
                full = PreparedDocument(doc.source, doc.parsed, doc.chunks + tuple(captions))
                current = self.catalog.get(item.doc_id)
                reuse = self.embedding.of_version(item.doc_id, current.version if current else 0)
                [embedded] = self.embedding.embed([full], reuse, report)
                if not self.committer.write(item, full, embedded):
                    return  # the file moved on: its newer version gets the captions
        except FileChanged:
            return
        except IngestError as exc:
            log.warning("figures of %s/%s: %s", item.share, item.entry.path, exc)
            status = "pending" if isinstance(exc, TransientError) else "failed"
        except Exception:
            if not self.contain_write_errors:
                raise
            log.exception("captions of %s/%s not written", item.share, item.entry.path)
            return
        if doc.parsed.vlm_pending and status != "failed":
            status = "pending"  # pages the VLM could not read yet: read again when it is back
        self.catalog.set_captions(item.doc_id, status)
