"""TEST DOUBLE of a VLM server: a tiny stand-in for vLLM's OpenAI-compatible API, for tests only.

It is not a model and not vLLM. It speaks just enough of the protocol (``GET /v1/models``,
``POST /v1/chat/completions``) to check what the client sends and how it copes with failures: it
records every request (path, headers, JSON body), answers with a scripted reply, and can be told
to answer HTTP errors or to stall past the client's time-out for the next N requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]


def default_reply(body: dict[str, Any]) -> str:
    """A caption naming the image by hash, so that tests can tell images apart."""
    return f"Test caption of image {image_sha(body)[:12]}."


def image_sha(body: dict[str, Any]) -> str:
    url = image_url(body)
    return hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()


def image_url(body: dict[str, Any]) -> str:
    return str(body["messages"][0]["content"][1]["image_url"]["url"])


def prompt_of(body: dict[str, Any]) -> str:
    return str(body["messages"][0]["content"][0]["text"])


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class _Script:
    failures: list[int] = field(default_factory=list)  # HTTP statuses for the next requests
    stalls: list[float] = field(default_factory=list)  # seconds to sleep before answering


class VlmDouble:
    """A test double of an OpenAI-compatible chat completions server on 127.0.0.1."""

    def __init__(self, reply: Reply = default_reply, model: str = "test-vlm") -> None:
        self.reply = reply
        self.model = model
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script = _Script()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def completions(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def fail_next(self, times: int, status: int = 500) -> None:
        with self._lock:
            self._script.failures += [status] * times

    def stall_next(self, times: int, seconds: float) -> None:
        with self._lock:
            self._script.stalls += [seconds] * times

    def start(self) -> VlmDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> VlmDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the server side ------------------------------------------------------------------------
    def _next(self) -> tuple[int | None, float]:
        with self._lock:
            status = self._script.failures.pop(0) if self._script.failures else None
            stall = self._script.stalls.pop(0) if self._script.stalls else 0.0
            return status, stall

    def _answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append(Recorded(method, handler.path, dict(handler.headers), body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, stall = self._next()
            if stall:
                time.sleep(stall)
            if status is not None:
                code, answer = status, {"error": {"message": f"scripted HTTP {status}"}}
            elif method == "GET" and handler.path.rstrip("/").endswith("/v1/models"):
                code, answer = 200, {"object": "list", "data": [{"id": self.model}]}
            elif method == "POST" and handler.path.endswith("/v1/chat/completions") and body:
                code, answer = 200, self._completion(body)
            else:
                code, answer = 404, {"error": {"message": f"no route {method} {handler.path}"}}
        finally:
            # done before answering: once the client has the answer it may send the next request
            with self._lock:
                self.in_flight -= 1
        _send(handler, code, answer)

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.reply(body)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],  # fmt: skip
            "usage": {"prompt_tokens": 100, "completion_tokens": len(text.split())},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                double._answer(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                double._answer(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (its time-out)
        pass
