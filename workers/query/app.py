"""The query API (FastAPI), bound to 127.0.0.1 by default.

Every endpoint that returns content applies the caller's ACL filter: search, a document's chunks,
a chunk's neighbours, the MCP tools (``/mcp``), Dify's ``/retrieval``; who asks is decided per
request (``workers.query.identity``). ``/status`` gives admin callers the full report and others
counts only. ``/healthz``, ``/metrics`` (counts and timings, no content) and the OAuth
protected-resource metadata need no token.
"""

# No "from __future__ import annotations" here: FastAPI must evaluate the Annotated[..., Depends]
# hints of the endpoints, which name dependencies local to create_app.
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.routing import Route

from index.permissions.callers import Authenticator, Caller
from index.permissions.readers import Principal
from index.search import Searcher
from index.vectors import IndexDamaged, SearchMode
from workers.metrics import BacklogCollector
from workers.query.dify import add_retrieval
from workers.query.identity import (
    METADATA_PATH,
    FrontEnds,
    Refused,
    challenge,
    identify,
    identify_caller,
    resource_metadata,
)
from workers.query.mcp_tools import McpEndpoint, mcp_server

#: a body over the limit but under this is read before the 413 (a client still sending gets the
#: answer); a larger one is not read at all
_DRAIN_BYTES = 4 * 1024 * 1024


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


def create_app(
    searcher: Searcher,
    status: Callable[[], dict[str, Any]],
    auth: Authenticator,
    pending_since: Callable[[], dict[str, datetime]] | None = None,
    verify: Callable[[list[str], bool], dict[str, Any]] | None = None,
    limits: Limits | None = None,
    front: FrontEnds | None = None,
) -> FastAPI:
    front = front or FrontEnds()
    # the MCP SDK's session manager runs for the app's lifetime (uvicorn's lifespan)
    tools = mcp_server(searcher, front.sources) if front.mcp else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if tools is None:
            yield
            return
        async with tools.session_manager.run():
            yield

    app = FastAPI(title="ShareIndex query API", version="0.1.0", lifespan=lifespan,
                  description="Search a company's file shares as the signed-in user: every "
                  "answer holds only what that user may read.")  # fmt: skip
    limits = limits or Limits()
    buckets = _Buckets(limits.rate_per_s)

    @app.middleware("http")
    async def limit(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        size = len(request.url.path) + len(request.url.query)
        declared = request.headers.get("content-length", "0")
        if size > limits.max_request_bytes or (
            declared.isdigit() and int(declared) > limits.max_request_bytes
        ):
            if declared.isdigit() and int(declared) <= _DRAIN_BYTES:
                await request.body()  # read, so that the client gets the answer, not a reset
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

    def _headers(request: Request, refused: Refused) -> dict[str, str] | None:
        return challenge(request, front) if refused.status == 401 else None

    def _refused(request: Request, refused: Refused) -> HTTPException:
        return HTTPException(refused.status, refused.detail, headers=_headers(request, refused))

    def caller(request: Request) -> Caller:
        try:
            return identify_caller(auth, request.headers.get("authorization"))
        except Refused as refused:
            raise _refused(request, refused) from refused

    def principal(request: Request, user: str | None = None) -> Principal:
        try:
            return identify(auth, request.headers, user, request.query_params.getlist("group"))
        except Refused as refused:
            raise _refused(request, refused) from refused

    def _request_principal(request: Request) -> Principal:
        return identify(auth, request.headers, named=True)

    def _refusal(request: Request, refused: Refused) -> JSONResponse:
        return JSONResponse({"detail": refused.detail}, refused.status,
                            headers=_headers(request, refused))  # fmt: skip

    if tools is not None:
        endpoint = McpEndpoint(tools, _request_principal, _refusal)
        app.router.routes.append(Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"]))

    add_retrieval(app, searcher, front.sources, _request_principal,
                  lambda: list(front.sources.roots) or None)  # fmt: skip

    @app.get(METADATA_PATH, include_in_schema=False)
    def protected_resource(request: Request) -> dict[str, Any]:
        return resource_metadata(request, front, "")

    @app.get(METADATA_PATH + "/mcp", include_in_schema=False)
    def protected_mcp(request: Request) -> dict[str, Any]:
        return resource_metadata(request, front, "/mcp")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics() -> Response:
        body = generate_latest() + generate_latest(backlog)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/search", response_model=list[dict[str, Any]], operation_id="search_documents")
    def search(
        as_principal: Annotated[Principal, Depends(principal)],
        q: Annotated[str, Query(min_length=1, max_length=4000,
                                description="what to find, in the user's words")],
        k: Annotated[int, Query(ge=1, le=200, description="how many passages")] = 10,
        mode: SearchMode = "hybrid",
        context: Annotated[int, Query(ge=0, le=5)] = 0,
        share: Annotated[list[str] | None, Query(description="only these shares")] = None,
        group: Annotated[
            list[str] | None, Query()
        ] = None,  # read by principal(); listed for the docs
    ) -> Response:
        """Search the company's file shares for passages about a question,
        as the signed-in user: the best passages that user may read, each with the file it comes
        from (metadata.share, metadata.path), its modification time and a score. ``context``:
        each with its N neighbouring passages before and after (same version, permissions)."""
        hits = searcher.search(q, as_principal, k=k, mode=mode, context=context,
                               shares=tuple(share or ()))  # fmt: skip
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
