"""Figures to caption chunks, after the text is indexed (the text never waits for the GPU).

The figures of a committed document are read again from the share (by path, never through the
queue), captioned by the VLM through the content cache, and the document is written once more
with the caption chunks appended: same content, same version, the text vectors reused. While the
VLM is down the document is marked ``captions=pending`` and the next reconcile (or the
requeuer) adds them; images already captioned come from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.cache import ContentCache
from ingest.images import IMAGE_FILETYPES
from ingest.models import Chunk, PreparedDocument
from ingest.pipeline import CaptionStatus, caption_figures, document_figures
from ingest.stages.caption import ImageCaptioner
from ingest.stages.chunk import DocumentChunker
from ingest.stages.figures import FigureOptions

#: the formats whose pictures are extracted
FIGURE_FILETYPES = frozenset({"pdf", "docx", "pptx"}) | IMAGE_FILETYPES


@dataclass
class FigureCaptioner:
    captioner: ImageCaptioner
    cache: ContentCache | None
    options: FigureOptions
    max_file_bytes: int
    chunker: DocumentChunker | None = None

    def wants(self, doc: PreparedDocument) -> bool:
        return doc.parsed.filetype in FIGURE_FILETYPES

    def run(self, doc: PreparedDocument) -> tuple[list[Chunk], CaptionStatus]:
        """Caption chunks numbered after the document's own; FileChanged if it moved on."""
        figures = document_figures(doc, self.options, self.max_file_bytes)
        if not figures:
            return [], "captioned"
        return caption_figures(doc, figures, self.captioner, self.cache, chunker=self.chunker)
