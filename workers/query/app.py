"""The query API (FastAPI), bound to 127.0.0.1 by default.

Every endpoint that returns content applies the caller's ACL filter: search, a document's chunks,
a chunk's neighbours. ``/status`` gives admin callers the full report and others counts only.
``/healthz`` and ``/metrics`` (counts and timings, no content) need no token.
"""

# No "from __future__ import annotations" here: FastAPI must evaluate the Annotated[..., Depends]
# hints of the endpoints, which name dependencies local to create_app.
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from index.permissions.callers import Authenticator, Caller, Forbidden, Unauthenticated
from index.permissions.directory import DirectoryUnavailable, UnknownPrincipal
from index.permissions.readers import Principal
from index.search import Searcher
from index.vectors import IndexDamaged, SearchMode
from workers.metrics import BacklogCollector


@dataclass(frozen=True)
class Limits:
    """Request limits (settings api_max_request_bytes, api_rate_per_s): a larger request gets
    413, a caller (a token; the address without one) past the rate 429 with Retry-After."""

    max_request_bytes: int = 65536
    #: requests per second per caller, in bursts of up to twice that; 0: no limit
    rate_per_s: float = 100.0


class _Buckets:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        now = time.monotonic()
        tokens, then = self.state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if len(self.state) > 10_000:  # bounded: forget the idle callers
            self.state = {k: v for k, v in self.state.items() if now - v[1] < 60}
        if tokens < 1:
            self.state[key] = (tokens, now)
            return False
        self.state[key] = (tokens - 1, now)
        return True


def _bad_name(name: str) -> str | None:
    """Why a user or group name from a request cannot be a principal (None: it can)."""
    if len(name) > 512:
        return "are at most 512 characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "may not contain control characters"
    return None


def create_app(
    searcher: Searcher,
    status: Callable[[], dict[str, Any]],
    auth: Authenticator,
    pending_since: Callable[[], dict[str, datetime]] | None = None,
    verify: Callable[[list[str], bool], dict[str, Any]] | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    app = FastAPI(title="ShareIndex query API", version="0.1.0")
    limits = limits or Limits()
    buckets = _Buckets(limits.rate_per_s)

    @app.middleware("http")
    async def limit(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        size = len(request.url.path) + len(request.url.query)
        declared = request.headers.get("content-length", "0")
        if size > limits.max_request_bytes or (
            declared.isdigit() and int(declared) > limits.max_request_bytes
        ):
            return JSONResponse(
                {"detail": f"request larger than {limits.max_request_bytes} bytes"}, 413
            )
        if limits.rate_per_s > 0:
            who = request.headers.get("authorization") or (
                request.client.host if request.client else ""
            )
            key = hashlib.sha256(who.encode("utf-8", "replace")).hexdigest()
            if not buckets.take(key):
                return JSONResponse(
                    {"detail": f"too many requests: at most {limits.rate_per_s:g} per second"},
                    429, headers={"Retry-After": "1"},
                )  # fmt: skip
        return await call_next(request)

    @app.exception_handler(IndexDamaged)
    async def damaged(_: Request, exc: IndexDamaged) -> JSONResponse:
        """A file of the index is damaged: 503 with what to do, never a 500 (or a traceback)."""
        return JSONResponse({"detail": str(exc)}, 503)

    backlog = CollectorRegistry(auto_describe=False)
    if pending_since is not None:
        backlog.register(BacklogCollector(pending_since))

    def caller(authorization: Annotated[str | None, Header()] = None) -> Caller:
        try:
            return auth.caller(authorization)
        except Unauthenticated as exc:
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc

    def principal(
        request: Request, who: Annotated[Caller, Depends(caller)], user: str | None = None
    ) -> Principal:
        groups = request.query_params.getlist("group")
        for name in (user or "", *groups):
            problem = _bad_name(name)
            if problem:
                raise HTTPException(400, f"user and group names {problem}")
        try:
            return auth.principal(who, user, groups)
        except (Forbidden, UnknownPrincipal) as exc:  # never another user's, never anonymous
            raise HTTPException(403, str(exc)) from exc
        except DirectoryUnavailable as exc:
            raise HTTPException(503, str(exc)) from exc

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics() -> Response:
        body = generate_latest() + generate_latest(backlog)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/search", response_model=list[dict[str, Any]])
    def search(
        as_principal: Annotated[Principal, Depends(principal)],
        q: Annotated[str, Query(min_length=1, max_length=4000)],
        k: Annotated[int, Query(ge=1, le=200)] = 10,
        mode: SearchMode = "hybrid",
        context: Annotated[int, Query(ge=0, le=5)] = 0,
        group: Annotated[
            list[str] | None, Query()
        ] = None,  # read by principal(); listed for the docs
    ) -> Response:
        """Top-k chunks the caller may read; ``context``: each with its N neighbouring chunks
        before and after (same version, same ACL)."""
        hits = searcher.search(q, as_principal, k=k, mode=mode, context=context)
        return _json([hit.to_dict() for hit in hits])

    @app.get("/documents/{doc_id}")
    def document(
        doc_id: str, as_principal: Annotated[Principal, Depends(principal)]
    ) -> list[dict[str, Any]]:
        """The chunks of a document, in order; 404 when the caller may not read it (or it is unknown)."""
        hits = searcher.store.document_chunks(doc_id, as_principal)
        if not hits:
            raise HTTPException(404, "no such document")
        return [h.to_dict() for h in hits]

    @app.get("/documents/{doc_id}/chunks/{index}/neighbours")
    def neighbours(
        doc_id: str,
        index: int,
        as_principal: Annotated[Principal, Depends(principal)],
        before: Annotated[int, Query(ge=0, le=20)] = 1,
        after: Annotated[int, Query(ge=0, le=20)] = 1,
    ) -> list[dict[str, Any]]:
        wanted = list(range(max(0, index - before), index + after + 1))
        hits = searcher.store.document_chunks(doc_id, as_principal, wanted)
        if not hits:
            raise HTTPException(404, "no such document")
        return [h.to_dict() for h in hits]

    @app.get("/status")
    def get_status(who: Annotated[Caller, Depends(caller)]) -> dict[str, Any]:
        report = status()
        if who.admin:
            return report
        return {
            "documents": report["documents"],
            "freshness": report["freshness"],
            "behind_s": report["behind_s"],
        }

    @app.post("/admin/verify")
    def post_verify(
        who: Annotated[Caller, Depends(caller)],
        share: Annotated[list[str] | None, Query()] = None,
        repair: bool = False,
    ) -> dict[str, Any]:
        """``shareindex verify`` in the process that holds the index (admin callers only)."""
        if not who.admin:
            raise HTTPException(403, "verify is for admin callers")
        if verify is None:
            raise HTTPException(404, "this process does not verify (no shares here)")
        try:
            return verify(share or [], repair)
        except KeyError as exc:
            raise HTTPException(400, str(exc.args[0] if exc.args else exc)) from exc

    return app


def _json(body: Any) -> Response:
    """JSON as it is (the hits are plain data): FastAPI's response validation and encoding of a
    return value cost more than the search itself."""
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")
