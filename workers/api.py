"""The query API of the embedded service (FastAPI), bound to 127.0.0.1 by default.

Callers authenticate with the bearer token the service writes, readable only by its owner, into
the data dir: whoever can read that could read the index files directly anyway.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from index.acl import Principal
from index.search import Searcher
from index.store import SearchMode


def create_app(searcher: Searcher, status: Callable[[], dict[str, Any]], token: str) -> FastAPI:
    app = FastAPI(title="ShareIndex query API", version="0.1.0")

    def authenticate(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = f"Bearer {token}"
        if not authorization or not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise HTTPException(status_code=401, detail="missing or invalid bearer token",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics: counts and timings only, no document content."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/search", dependencies=[Depends(authenticate)])
    def search(
        q: Annotated[str, Query(min_length=1, max_length=4000)],
        user: str | None = None,
        group: Annotated[list[str] | None, Query()] = None,
        k: Annotated[int, Query(ge=1, le=200)] = 10,
        mode: SearchMode = "hybrid",
    ) -> list[dict[str, Any]]:
        principal = Principal(user=user, groups=tuple(group or ()))
        return [hit.to_dict() for hit in searcher.search(q, principal, k=k, mode=mode)]

    @app.get("/status", dependencies=[Depends(authenticate)])
    def get_status() -> dict[str, Any]:
        return status()

    return app
