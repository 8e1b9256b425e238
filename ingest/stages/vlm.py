"""The VLM (vLLM's OpenAI-compatible API): images -> descriptions, page images -> Markdown.

``VlmClient`` talks to vLLM's OpenAI-compatible ``/v1/chat/completions``: one user message with
the prompt and the image as a base64 PNG data URL, ``temperature`` 0 so that the same image gives
the same text (and the cache stays truthful). An outage is not the document's fault: time-outs,
connection errors, 429 and 5xx are retried with exponential backoff and jitter, and after the
retries the client raises ``VlmUnavailable`` (transient) and stays "down" for ``cooldown_s``, so
the next documents fail fast instead of each waiting out the retries (their text is indexed at
once; captions follow when the VLM is back). A 4xx is ``VlmRejected``: this image, permanently.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ingest.cache import ContentCache, content_key
from ingest.errors import VlmRejected, VlmUnavailable
from ingest.images import first_frame, fit, to_png

log = logging.getLogger(__name__)

#: bump when the way requests are built changes what the VLM would answer (cache keys include it)
CAPTION_VERSION = "1"

DEFAULT_CAPTION_PROMPT = (
    "Describe this image factually for a search index. Say what kind of image it is (photo, "
    "chart, diagram, table, screenshot, drawing), what it shows, and for a chart its axes, "
    "series and trend. Transcribe any visible text exactly. Do not guess what is not visible. "
    "Write the description in {language}."
)
DEFAULT_PAGE_PROMPT = (
    "Transcribe this document page to Markdown. Keep the reading order, the original language "
    "and wording. Use # headings for headings, Markdown tables for tables and - for list items. "
    "Output only the transcription, without comments."
)
#: the language a description is asked in when the document's own is unknown
UNKNOWN_LANGUAGE = "the language of the text in the image, or English if there is none"


class ImageCaptioner(Protocol):
    """What the pipeline needs to caption; ``VlmClient`` is the real one."""

    concurrency: int

    def caption(self, image: bytes, language: str | None = None) -> str: ...

    def cache_tag(self, kind: str, language: str | None = None) -> str:
        """Model and prompt version: what, beside the image, decides the answer."""
        ...


class PageTranscriber(Protocol):
    def transcribe_page(self, image: bytes) -> str: ...

    def cache_tag(self, kind: str, language: str | None = None) -> str: ...


@dataclass(frozen=True)
class VlmOptions:
    #: the server's base URL (``http://vllm:8000`` or ``.../v1``) or the full completions URL
    url: str
    #: the served model name; None: the first model the server lists under /v1/models
    model: str | None = None
    api_key: str | None = None
    #: a ``{language}`` in it becomes the document's language; None: DEFAULT_CAPTION_PROMPT
    prompt: str | None = None
    #: None: DEFAULT_PAGE_PROMPT
    page_prompt: str | None = None
    max_tokens: int = 512
    page_max_tokens: int = 4096
    max_image_side: int = 1024
    max_image_pixels: int = 1024 * 1024
    max_page_side: int = 1600
    concurrency: int = 4
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    #: after an outage, calls fail at once for this long instead of waiting on a dead server
    cooldown_s: float = 30.0


def completions_url(url: str) -> str:
    base = url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def image_data_url(image: bytes, max_side: int, max_pixels: int) -> str:
    """The image, resized to the limits, as a PNG data URL; a bad image is a PermanentError."""
    png = to_png(fit(first_frame(image, "image"), max_side, max_pixels))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _version(*parts: object) -> str:
    text = "\x00".join(str(p) for p in (CAPTION_VERSION, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class VlmClient:
    """A thread-safe client; pickles as its options (it crosses into parse processes)."""

    def __init__(self, options: VlmOptions) -> None:
        self.options = options
        self.concurrency = options.concurrency
        self._url = completions_url(options.url)
        self._setup()

    def _setup(self) -> None:
        self._semaphore = threading.BoundedSemaphore(max(1, self.options.concurrency))
        self._lock = threading.Lock()
        self._http: Any = None
        self._model = self.options.model
        self._down_until = 0.0
        self.calls = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.options = state["options"]
        self.concurrency = self.options.concurrency
        self._url = completions_url(self.options.url)
        self._setup()

    # -- the two uses --------------------------------------------------------------------------
    def caption(self, image: bytes, language: str | None = None) -> str:
        opts = self.options
        url = image_data_url(image, opts.max_image_side, opts.max_image_pixels)
        return self.complete(self.caption_prompt(language), url, opts.max_tokens)

    def transcribe_page(self, image: bytes) -> str:
        opts = self.options
        url = image_data_url(image, opts.max_page_side, opts.max_page_side**2)
        return self.complete(self.page_prompt(), url, opts.page_max_tokens)

    def caption_prompt(self, language: str | None = None) -> str:
        template = self.options.prompt or DEFAULT_CAPTION_PROMPT
        return template.replace("{language}", language or UNKNOWN_LANGUAGE)

    def page_prompt(self) -> str:
        return self.options.page_prompt or DEFAULT_PAGE_PROMPT

    def cache_tag(self, kind: str, language: str | None = None) -> str:
        opts = self.options
        if kind == "layout":
            version = _version(self.page_prompt(), opts.page_max_tokens, opts.max_page_side)
        else:
            prompt = self.caption_prompt(language)
            version = _version(prompt, opts.max_tokens, opts.max_image_side, opts.max_image_pixels)
        return f"{self.model()}|{version}"

    # -- the protocol ------------------------------------------------------------------------
    def request_body(self, prompt: str, image_url: str, max_tokens: int) -> dict[str, Any]:
        content = [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": image_url}},
        ]
        return {
            "model": self.model(),
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }

    def complete(self, prompt: str, image_url: str, max_tokens: int) -> str:
        body = self.request_body(prompt, image_url, max_tokens)
        with self._semaphore:
            answer = self._call(lambda: self._post(body))
        return _message_text(answer)

    def model(self) -> str:
        if self._model is None:
            self._model = str(self._call(self._discover_model))
        return self._model

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- transport -----------------------------------------------------------------------------
    def _client(self) -> Any:
        import httpx

        with self._lock:
            if self._http is None:
                key = self.options.api_key
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                self._http = httpx.Client(timeout=self.options.timeout_s, headers=headers)
            return self._http

    def _call(self, call: Any) -> Any:
        """``call`` with retries; an outage marks the server down for ``cooldown_s``."""
        self._check_not_down()
        try:
            return self._with_retries(call)
        except VlmUnavailable:
            with self._lock:
                self._down_until = time.monotonic() + self.options.cooldown_s
            raise

    def _check_not_down(self) -> None:
        left = self._down_until - time.monotonic()
        if left > 0:
            raise VlmUnavailable(
                f"the VLM at {self.options.url} is unavailable; next try in {left:.0f} s"
            )

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        response = self._client().post(self._url, json=body)
        return _json_or_raise(response, self._url)

    def _discover_model(self) -> str:
        url = self._url.rsplit("/chat/completions", 1)[0] + "/models"
        data = _json_or_raise(self._client().get(url), url).get("data") or []
        if not data or not isinstance(data[0], dict) or "id" not in data[0]:
            raise VlmRejected(f"the VLM server at {url} lists no model; set the VLM model")
        return str(data[0]["id"])

    def _with_retries(self, call: Any) -> Any:
        import httpx

        opts = self.options
        for attempt in range(opts.retries + 1):
            try:
                return call()
            except (httpx.TimeoutException, httpx.TransportError, _Retryable) as exc:
                reason = _describe(exc, opts.timeout_s)
                if attempt == opts.retries:
                    raise VlmUnavailable(
                        f"the VLM at {opts.url} is unavailable after {attempt + 1} tries: {reason}"
                    ) from exc
                delay = min(opts.max_backoff_s, opts.backoff_s * 2**attempt)
                # jitter: clients that failed together do not come back together
                delay *= 0.5 + random.random() / 2
                log.warning("VLM call failed (%s); retry %d in %.1f s", reason, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


class _Retryable(Exception):
    """A 429 or 5xx answer: the server is there but cannot serve now."""


def _json_or_raise(response: Any, url: str) -> dict[str, Any]:
    status = response.status_code
    if status == 429 or status >= 500:
        raise _Retryable(f"HTTP {status} from {url}")
    if status >= 400:
        detail = response.text[:300].strip()
        raise VlmRejected(f"the VLM refused the request (HTTP {status}): {detail}")
    try:
        data = response.json()
    except ValueError as exc:
        raise _Retryable(f"the VLM answered with something that is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _Retryable("the VLM answered with JSON that is not an object")
    return data


def _message_text(answer: dict[str, Any]) -> str:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise VlmUnavailable(f"the VLM answer has no choices[0].message.content: {exc}") from exc
    return (content or "").strip()


def _describe(exc: Exception, timeout_s: float) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, httpx.TransportError):
        return f"{type(exc).__name__}: {exc}"
    return str(exc)


# -- cached calls ---------------------------------------------------------------------------------


def caption_image(
    captioner: ImageCaptioner,
    image: bytes,
    cache: ContentCache | None = None,
    language: str | None = None,
) -> str:
    """The caption of one image, from the cache when this image was captioned the same way."""
    key = content_key("caption", image, captioner.cache_tag("caption", language), CAPTION_VERSION)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    text = captioner.caption(image, language)
    if cache is not None:
        cache.put(key, text)
    return text
