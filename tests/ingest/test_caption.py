"""The VLM client against a test double of vLLM's OpenAI API (tests/vlm_double.py), the content
cache, captions as chunks, and the VLM layout mode."""

from __future__ import annotations

import base64
import io
import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ingest import nlp_fallback
from ingest.cache import MemoryCache
from ingest.captions import caption_figures, document_figures
from ingest.errors import (
    CorruptDocument,
    PagesNeedGpu,
    TransientError,
    VlmRejected,
    VlmUnavailable,
)
from ingest.models import Chunk, Element, ParsedDocument, PreparedDocument, SourceFile
from ingest.pipeline import prepare
from ingest.stages.chunk import ChunkOptions, DocumentChunker
from ingest.stages.figures import FigureOptions, extract_figures
from ingest.stages.ocr import OcrOptions, read_png
from ingest.stages.pages import markdown_elements
from ingest.stages.parse import ParseOptions
from ingest.stages.vlm import (
    DEFAULT_PAGE_PROMPT,
    VlmClient,
    VlmOptions,
    caption_image,
    completions_url,
)
from tests import scans
from tests.helpers import free_port
from tests.vlm_double import VlmDouble, image_url, prompt_of


@pytest.fixture
def vlm() -> Iterator[VlmDouble]:
    with VlmDouble() as double:
        yield double


def _client(url: str, **kw: Any) -> VlmClient:
    options = {"model": "test-vlm", "backoff_s": 0.01, "timeout_s": 5.0, "cooldown_s": 30.0} | kw
    return VlmClient(VlmOptions(url=url, **options))


def _png(size: tuple[int, int] = (300, 200), color: str = "navy") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _sent_image(body: dict[str, Any]) -> Image.Image:
    url = image_url(body)
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# -- the request -----------------------------------------------------------------------------


def test_the_request_has_the_exact_openai_shape(vlm: VlmDouble) -> None:
    client = _client(vlm.url, max_tokens=200, api_key="s3cret", prompt="Describe in {language}.")
    assert client.caption(_png(), language="Japanese") == vlm.reply(vlm.completions[0].body or {})
    request = vlm.completions[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer s3cret"
    body = request.body or {}
    assert set(body) == {"model", "messages", "max_tokens", "temperature"}
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("test-vlm", 200, 0)
    [message] = body["messages"]
    assert message["role"] == "user"
    assert message["content"][0] == {"type": "text", "text": "Describe in Japanese."}
    assert message["content"][1]["type"] == "image_url"
    assert _sent_image(body).size == (300, 200)


def test_images_are_resized_to_the_limits(vlm: VlmDouble) -> None:
    client = _client(vlm.url, max_image_side=512, max_image_pixels=10_000_000)
    client.caption(_png((3000, 1000)))
    assert _sent_image(vlm.completions[0].body or {}).size == (512, 171)
    client = _client(vlm.url, max_image_side=4096, max_image_pixels=250_000)
    client.caption(_png((1000, 1000)))
    assert _sent_image(vlm.completions[1].body or {}).size == (500, 500)


def test_the_default_prompt_asks_for_visible_text_in_the_documents_language(vlm: VlmDouble) -> None:
    _client(vlm.url).caption(_png(), language="Japanese")
    prompt = prompt_of(vlm.completions[0].body or {})
    assert "visible text" in prompt
    assert "in Japanese" in prompt


def test_the_model_is_discovered_when_not_configured(vlm: VlmDouble) -> None:
    client = VlmClient(VlmOptions(url=vlm.url + "/v1"))
    client.caption(_png())
    assert [r.path for r in vlm.requests] == ["/v1/models", "/v1/chat/completions"]
    assert (vlm.completions[0].body or {})["model"] == "test-vlm"


def test_completions_url_accepts_base_v1_or_full() -> None:
    for url in (
        "http://h:8000",
        "http://h:8000/",
        "http://h:8000/v1",
        "http://h:8000/v1/chat/completions",
    ):
        assert completions_url(url) == "http://h:8000/v1/chat/completions"


# -- failures ----------------------------------------------------------------------------------


def test_5xx_is_retried_with_backoff(vlm: VlmDouble) -> None:
    vlm.fail_next(2, status=500)
    assert _client(vlm.url, retries=3).caption(_png()).startswith("Test caption")
    assert len(vlm.completions) == 3


def test_a_time_out_is_retried(vlm: VlmDouble) -> None:
    vlm.stall_next(1, seconds=2.0)
    client = _client(vlm.url, timeout_s=0.5, retries=2)
    assert client.caption(_png()).startswith("Test caption")
    assert len(vlm.completions) == 2


def test_after_the_retries_the_vlm_is_unavailable_and_fails_fast(vlm: VlmDouble) -> None:
    vlm.fail_next(10, status=503)
    client = _client(vlm.url, retries=2)
    with pytest.raises(VlmUnavailable, match="after 3 tries: HTTP 503") as info:
        client.caption(_png())
    assert isinstance(info.value, TransientError)
    assert len(vlm.completions) == 3
    with pytest.raises(VlmUnavailable, match="next try in"):  # at once: the cooldown
        client.caption(_png())
    assert len(vlm.completions) == 3  # the cooldown sent nothing (and waited on nothing)


def test_a_4xx_is_permanent_and_not_retried(vlm: VlmDouble) -> None:
    vlm.fail_next(1, status=400)
    with pytest.raises(VlmRejected, match="HTTP 400"):
        _client(vlm.url).caption(_png())
    assert len(vlm.completions) == 1


def test_a_server_that_is_not_there_is_unavailable() -> None:
    client = _client(f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(VlmUnavailable, match="ConnectError"):
        client.caption(_png())


def test_a_corrupt_image_is_refused_before_any_request(vlm: VlmDouble) -> None:
    with pytest.raises(CorruptDocument, match="not a valid image"):
        _client(vlm.url).caption(b"not an image at all")
    assert vlm.requests == []


def test_concurrency_is_limited(vlm: VlmDouble) -> None:
    vlm.stall_next(6, seconds=0.3)
    client = _client(vlm.url, concurrency=2)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: client.caption(_png(color=f"#0000{i:02x}")), range(6)))
    assert len(vlm.completions) == 6
    assert vlm.max_in_flight == 2


def test_the_client_pickles_into_a_parse_process(vlm: VlmDouble) -> None:
    clone = pickle.loads(pickle.dumps(_client(vlm.url)))
    assert clone.caption(_png()).startswith("Test caption")


# -- the cache ---------------------------------------------------------------------------------


def test_a_cached_caption_costs_no_vlm_call(vlm: VlmDouble) -> None:
    client, cache = _client(vlm.url), MemoryCache()
    first = caption_image(client, _png(), cache, "English")
    assert caption_image(client, _png(), cache, "English") == first
    assert len(vlm.completions) == 1
    caption_image(client, _png(), cache, "Japanese")  # another prompt: another key
    assert len(vlm.completions) == 2


# -- captions as chunks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chunker(token_counter: Any) -> DocumentChunker:
    nlp_fallback.install()
    return DocumentChunker(token_counter, ChunkOptions(max_tokens=64))


@pytest.fixture
def figures_pdf(share: Path, chunker: DocumentChunker) -> PreparedDocument:
    (share / "report.pdf").write_bytes(scans.pdf_with_figures())
    return prepare(SourceFile("s", str(share), "report.pdf", 0, 0), ParseOptions(), chunker)


def test_captions_become_image_caption_chunks_after_the_text(
    vlm: VlmDouble, figures_pdf: PreparedDocument
) -> None:
    figures = document_figures(figures_pdf, FigureOptions(), 10_000_000)
    assert len(figures) == 1  # the chart; the logo and the repeated banner are not figures
    chunks, status = caption_figures(figures_pdf, figures, _client(vlm.url), MemoryCache())
    assert status == "captioned"
    [chunk] = chunks
    assert chunk.kind == "image_caption"
    assert chunk.kinds == ("image_caption",)
    assert chunk.index == len(figures_pdf.chunks)
    assert chunk.page_numbers == (2,)
    assert chunk.text == vlm.reply(vlm.completions[0].body or {})
    assert "in English" in prompt_of(vlm.completions[0].body or {})


def test_a_second_run_is_answered_by_the_cache(
    vlm: VlmDouble, figures_pdf: PreparedDocument
) -> None:
    figures = document_figures(figures_pdf, FigureOptions(), 10_000_000)
    cache, client = MemoryCache(), _client(vlm.url)
    first = caption_figures(figures_pdf, figures, client, cache)
    calls = len(vlm.completions)
    # a retried task, or a moved file: figures extracted again, a new client, the same cache
    again = document_figures(figures_pdf, FigureOptions(), 10_000_000)
    assert caption_figures(figures_pdf, again, _client(vlm.url), cache) == first
    assert len(vlm.completions) == calls == 1


def test_ocr_text_of_a_figure_joins_its_caption(
    vlm: VlmDouble, figures_pdf: PreparedDocument
) -> None:
    figures = document_figures(figures_pdf, FigureOptions(), 10_000_000)

    def reader(image: bytes) -> str:
        return read_png(image, ["eng"], OcrOptions())

    chunks, status = caption_figures(figures_pdf, figures, _client(vlm.url), ocr=reader)
    assert chunks[0].text.startswith("Test caption")
    assert "Monthly output" in chunks[0].text
    # captioning off: the figure's text still becomes searchable
    chunks, status = caption_figures(figures_pdf, figures, None, ocr=reader)
    assert status == "off"
    assert "Monthly output" in chunks[0].text


def test_captioning_off_is_recorded_as_off(figures_pdf: PreparedDocument) -> None:
    figures = document_figures(figures_pdf, FigureOptions(), 10_000_000)
    assert caption_figures(figures_pdf, figures, None) == ([], "off")


def test_while_the_vlm_is_down_captions_are_pending_and_nothing_waits(
    vlm: VlmDouble, figures_pdf: PreparedDocument
) -> None:
    vlm.fail_next(100, status=502)
    figures = document_figures(figures_pdf, FigureOptions(), 10_000_000)
    client, cache = _client(vlm.url, retries=1), MemoryCache()
    assert caption_figures(figures_pdf, figures, client, cache) == ([], "pending")
    sent = len(vlm.completions)
    assert caption_figures(figures_pdf, figures, client, cache) == ([], "pending")
    assert len(vlm.completions) == sent  # the next document does not wait out retries
    vlm._script.failures.clear()
    client = _client(vlm.url)  # the VLM is back (a later pass, after the cooldown)
    chunks, status = caption_figures(figures_pdf, figures, client, cache)
    assert status == "captioned" and len(chunks) == 1


def test_a_long_caption_is_split_by_the_chunker(
    figures_pdf: PreparedDocument, chunker: DocumentChunker
) -> None:
    long_text = " ".join(f"The chart shows bar number {i} rising steadily." for i in range(40))
    with VlmDouble(reply=lambda body: long_text) as vlm:
        figures = document_figures(figures_pdf, FigureOptions(), 10_000_000)
        chunks, _ = caption_figures(figures_pdf, figures, _client(vlm.url), chunker=chunker)
    start = len(figures_pdf.chunks)
    assert len(chunks) > 1
    assert [c.index for c in chunks] == list(range(start, start + len(chunks)))
    assert all(c.kind == "image_caption" and c.page_numbers == (2,) for c in chunks)
    assert all(c.token_count <= 64 for c in chunks)


def test_docx_figures_keep_their_section(vlm: VlmDouble) -> None:
    figures = extract_figures(scans.docx_with_figures(), "docx")
    parsed = ParsedDocument("h", 1, 0, (), "docx")
    prepared = PreparedDocument(SourceFile("s", "/r", "a.docx", 1, 0), parsed,
                                (Chunk(0, "Plant overview text", "text"),))  # fmt: skip
    chunks, _ = caption_figures(prepared, figures, _client(vlm.url))
    assert [(c.index, c.section, c.page_numbers) for c in chunks] == [(1, "Output figures", ())]


def test_a_standalone_image_is_captioned_without_repeating_its_ocr(vlm: VlmDouble) -> None:
    data = scans.png_bytes(scans.text_image(scans.ENGLISH_LINES))
    parsed = ParsedDocument("h", len(data), 0, (), "png")
    prepared = PreparedDocument(SourceFile("s", "/r", "a.png", 1, 0), parsed,
                                (Chunk(0, "The narwhal bearings", "text"),))  # fmt: skip

    def reader(image: bytes) -> str:
        raise AssertionError("the image's text is already the document's text")

    chunks, status = caption_figures(
        prepared, extract_figures(data, "png"), _client(vlm.url), ocr=reader
    )
    assert status == "captioned"
    assert [c.kind for c in chunks] == ["image_caption"]


def test_a_changed_file_is_not_captioned_from_stale_bytes(
    share: Path, figures_pdf: PreparedDocument
) -> None:
    (share / "report.pdf").write_bytes(scans.pdf_with_figures(pages=4))
    with pytest.raises(TransientError, match="changed since it was parsed"):
        document_figures(figures_pdf, FigureOptions(), 10_000_000)


# -- the VLM layout mode -----------------------------------------------------------------------

PAGE_MARKDOWN = """# Inspection summary

The heron valve passed the pressure test.

| Part | Result |
|------|--------|
| Valve | pass |
| Seal | replaced |

- Next check in May
"""


def test_markdown_becomes_titles_text_tables_and_list_items() -> None:
    elements = markdown_elements("```markdown\n" + PAGE_MARKDOWN + "```", page=3)
    assert [(e.kind, e.text) for e in elements] == [
        ("title", "Inspection summary"),
        ("text", "The heron valve passed the pressure test."),
        ("table", "Part | Result\nValve | pass\nSeal | replaced"),
        ("list_item", "Next check in May"),
    ]
    assert elements[2].rows == (("Part", "Result"), ("Valve", "pass"), ("Seal", "replaced"))
    assert {e.page_number for e in elements} == {3}


def _layout_reply(body: dict[str, Any]) -> str:
    assert prompt_of(body) == DEFAULT_PAGE_PROMPT
    return PAGE_MARKDOWN


def test_layout_mode_sends_scanned_pages_to_the_vlm(share: Path, chunker: DocumentChunker) -> None:
    (share / "scan.pdf").write_bytes(scans.scanned_pdf([scans.page_scan(scans.ENGLISH_LINES)]))
    source = SourceFile("s", str(share), "scan.pdf", 0, 0)
    with VlmDouble(reply=_layout_reply) as vlm:
        options = ParseOptions(page_transcriber=_client(vlm.url), cache=MemoryCache())
        doc = prepare(source, options, chunker)
        assert len(vlm.completions) == 1
        assert (vlm.completions[0].body or {})["max_tokens"] == 4096
        assert doc.parsed.elements[0].kind == "title"
        assert any(e.kind == "table" for e in doc.parsed.elements)
        assert prepare(source, options, chunker) == doc  # the cache answers the second time
        assert len(vlm.completions) == 1


def test_a_cpu_worker_hands_pages_for_the_vlm_to_the_gpu_queue(
    share: Path, chunker: DocumentChunker
) -> None:
    """``transcribe_here`` off (a cpu-queue worker): a scanned page not in the cache is not sent
    to the VLM from here (PagesNeedGpu); once a gpu worker has transcribed it, the cache answers
    here too. An image file is a page like any other in the layout mode."""
    (share / "scan.pdf").write_bytes(scans.scanned_pdf([scans.page_scan(scans.ENGLISH_LINES)]))
    (share / "photo.png").write_bytes(scans.png_bytes(scans.page_scan(["A photographed form"])))
    cache = MemoryCache()
    with VlmDouble(reply=_layout_reply) as vlm:
        on_cpu = ParseOptions(page_transcriber=_client(vlm.url), cache=cache, transcribe_here=False)
        on_gpu = replace(on_cpu, transcribe_here=True)
        for name in ("scan.pdf", "photo.png"):
            source = SourceFile("s", str(share), name, 0, 0)
            with pytest.raises(PagesNeedGpu):
                prepare(source, on_cpu, chunker)
            assert len(vlm.completions) == (0 if name == "scan.pdf" else 1)
            doc = prepare(source, on_gpu, chunker)
            first = doc.parsed.elements[0]
            assert (first.kind, first.text) == ("title", "Inspection summary")
            assert first.page_number == (1 if name == "scan.pdf" else None)
            assert prepare(source, on_cpu, chunker) == doc  # from the cache, no VLM call
        assert len(vlm.completions) == 2


def test_layout_mode_can_read_pages_with_a_text_layer_too(
    share: Path, chunker: DocumentChunker
) -> None:
    """``layout_all_pages``: a text page goes to the VLM as well (a two-column paper's text layer
    reads in the wrong order); while the VLM is down it keeps its text layer, and only the scan
    is read by Tesseract."""
    text_lines = ["Abstract: the otter gasket study", "Left column and right column interleave."]
    (share / "paper.pdf").write_bytes(
        scans.mixed_pdf(text_lines, scans.page_scan(scans.ENGLISH_LINES))
    )
    source = SourceFile("s", str(share), "paper.pdf", 0, 0)
    with VlmDouble(reply=_layout_reply) as vlm:
        options = ParseOptions(page_transcriber=_client(vlm.url), layout_all_pages=True)
        doc = prepare(source, options, chunker)
        assert len(vlm.completions) == 2  # both pages
        titles = [(e.page_number, e.text) for e in doc.parsed.elements if e.kind == "title"]
        assert titles == [(1, "Inspection summary"), (2, "Inspection summary")]
        assert not any("otter gasket" in e.text for e in doc.parsed.elements)
    down = ParseOptions(page_transcriber=_client(f"http://127.0.0.1:{free_port()}", retries=0),
                        layout_all_pages=True)  # fmt: skip
    doc = prepare(source, down, chunker)
    plain = prepare(source, ParseOptions(), chunker)  # no layout mode: text layer, then OCR

    def page(d: PreparedDocument, number: int) -> list[Element]:
        return [e for e in d.parsed.elements if e.page_number == number]

    # the text layer itself, not a reading of its pixels; provisional: read again later
    assert [replace(e, provisional=False) for e in page(doc, 1)] == page(plain, 1)
    assert all(e.provisional for e in doc.parsed.elements) and doc.parsed.vlm_pending
    assert "otter gasket" in " ".join(e.text for e in page(doc, 1))
    assert "tungsten pendulum" in " ".join(e.text for e in page(doc, 2))  # the scan, by Tesseract


def test_layout_mode_falls_back_to_tesseract_while_the_vlm_is_down(share: Path) -> None:
    (share / "scan.pdf").write_bytes(scans.scanned_pdf([scans.page_scan(scans.ENGLISH_LINES)]))
    options = ParseOptions(page_transcriber=_client(f"http://127.0.0.1:{free_port()}", retries=0))
    doc = prepare(SourceFile("s", str(share), "scan.pdf", 0, 0), options, DocumentChunker(_Words()))
    assert "tungsten pendulum" in "\n".join(e.text for e in doc.parsed.elements)
    assert doc.parsed.vlm_pending  # Tesseract stands in: the page is read again later


class _Words:
    def count(self, text: str) -> int:
        return len(text.split())

    def cut(self, text: str, max_tokens: int) -> list[str]:
        words = text.split()
        return [" ".join(words[i : i + max_tokens]) for i in range(0, len(words), max_tokens)]
