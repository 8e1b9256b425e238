"""Figures to caption chunks, after the text is indexed (the text never waits for the GPU).

The figures of a committed document are read again from the share (by path, never through the
queue), captioned by the VLM and OCR'd by Tesseract (both through the content cache), and the
document is written once more with the caption chunks appended: same content, same version, the
text vectors reused. The OCR of figures is how the text of a picture on a page that has a text
layer (a pasted scan, a screenshot, a labelled chart) is read; it works without a VLM too. While
the VLM is down the document is marked ``captions=pending`` and the next reconcile (or the
requeuer) adds them; images already captioned or read come from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.cache import ContentCache
from ingest.images import IMAGE_FILETYPES
from ingest.models import Chunk, PreparedDocument
from ingest.pipeline import CaptionStatus, ImageReader, caption_figures, document_figures
from ingest.stages import ocr
from ingest.stages.chunk import DocumentChunker
from ingest.stages.figures import FigureOptions
from ingest.stages.parse import ParseOptions
from ingest.stages.vlm import ImageCaptioner

#: the formats whose pictures are extracted
FIGURE_FILETYPES = frozenset({"pdf", "docx", "pptx"}) | IMAGE_FILETYPES


@dataclass
class FigureCaptioner:
    #: the VLM; None: captions are off (recorded as such), figures are only OCR'd
    captioner: ImageCaptioner | None
    cache: ContentCache | None
    options: FigureOptions
    max_file_bytes: int
    chunker: DocumentChunker | None = None
    #: OCR of the figures with the share's languages; None: figures are not OCR'd
    parse: ParseOptions | None = None

    def wants(self, doc: PreparedDocument) -> bool:
        return doc.parsed.filetype in FIGURE_FILETYPES

    def run(self, doc: PreparedDocument) -> tuple[list[Chunk], CaptionStatus]:
        """Caption chunks numbered after the document's own; FileChanged if it moved on."""
        if self.captioner is None and doc.parsed.filetype in IMAGE_FILETYPES:
            return [], "off"  # its own OCR is the document's text already
        figures = document_figures(doc, self.options, self.max_file_bytes)
        if not figures:
            return [], "captioned" if self.captioner else "off"
        return caption_figures(
            doc, figures, self.captioner, self.cache,
            ocr=self._reader(doc.source.share), chunker=self.chunker,
        )  # fmt: skip

    def _reader(self, share: str) -> ImageReader | None:
        if self.parse is None or not self.parse.ocr.enabled:
            return None
        options = self.parse.for_share(share)

        def read(data: bytes) -> str:
            return ocr.image_text(data, options.languages, options.ocr, self.cache, "figure")

        return read
