"""The query API in a thread of the process that holds the index, and ``service.json``, which
tells the other commands of the same data dir where to reach it (and with which token)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import uvicorn

from index.catalog import Catalog
from index.permissions.callers import Authenticator, Caller, TokenEntry, new_token
from index.permissions.oidc import ForwardedJwt, OidcVerifier
from index.search import Searcher
from workers.query.app import Limits, create_app
from workers.query.client import SERVICE_FILE, read_service_info
from workers.query.identity import FrontEnds
from workers.query.results import Sources
from workers.settings import ConfigError, Settings


def token_entries(settings: Settings) -> list[TokenEntry]:
    return [
        TokenEntry(t.sha256, Caller(t.name, t.user, tuple(t.groups), t.on_behalf, t.admin,
                                    t.plain_headers))  # fmt: skip
        for t in settings.api_tokens
    ]


def front_ends(settings: Settings) -> FrontEnds:
    return FrontEnds(Sources.of_shares(settings.shares), settings.api_public_url,
                     settings.oidc_issuer)  # fmt: skip


def signed_identities(settings: Settings) -> tuple[OidcVerifier | None, ForwardedJwt | None]:
    """The identity provider's token check and Open WebUI's header check, as configured."""
    if not (settings.oidc_issuer or settings.openwebui_jwt_secret):
        return None, None
    oidc = None
    if settings.oidc_issuer and settings.oidc_audience:
        oidc = OidcVerifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url,
                            settings.oidc_user_claim)  # fmt: skip
    secret = settings.openwebui_jwt_secret
    return oidc, ForwardedJwt(secret.get_secret_value()) if secret else None


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the query API on {host}:{port}: {exc.strerror}"
            ) from exc


class QueryServer:
    """Serves ``/search`` and friends with the configured tokens, plus a local admin token that
    only the owner of the data dir can read (``service.json``, mode 0600)."""

    def __init__(
        self,
        settings: Settings,
        searcher: Searcher,
        status: Callable[[], dict[str, Any]],
        *,
        local_token: bool = True,
        pending_since: Callable[[], dict[str, datetime]] | None = None,
        verify: Callable[[list[str], bool], dict[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.url = f"http://{settings.api_host}:{settings.api_port}"
        self.token: str | None = None
        entries = token_entries(settings)
        if local_token:
            self.token, local_hash = new_token()
            entries.insert(0, TokenEntry(local_hash, Caller("local", on_behalf=True, admin=True)))
        from workers.components import make_directory

        oidc, forwarded = signed_identities(settings)
        self.auth = Authenticator(
            entries, expand_groups=settings.expand_groups, directory=make_directory(settings),
            oidc=oidc, forwarded=forwarded,
        )  # fmt: skip
        limits = Limits(settings.api_max_request_bytes, settings.api_rate_per_s)
        self.app = create_app(searcher, status, self.auth, pending_since, verify, limits,
                              front=front_ends(settings))  # fmt: skip
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def reload_tokens(self, settings: Settings) -> None:
        local = self.auth.tokens[:1] if self.token else []
        self.auth.tokens = [*local, *token_entries(settings)]
        self.auth.expand_groups = settings.expand_groups

    def start(self) -> None:
        # lifespan on: the MCP endpoint's session manager runs in the app's lifespan. A request
        # line of up to 2 MiB is read (h11 drops the connection past 16 KiB), so that a huge
        # query gets the limit's clear 413 (api_max_request_bytes), not a reset
        config = uvicorn.Config(self.app, host=self.settings.api_host, port=self.settings.api_port,
                                log_level="warning", lifespan="on",
                                h11_max_incomplete_event_size=2 * 1024 * 1024)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="query-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise ConfigError(f"the query API did not start on {self.url}")
        if self.token:
            self._write_service_file()

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=10)
        if self.token:
            self._remove_service_file()

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "url": self.url}

    def _write_service_file(self) -> None:
        path = self.settings.data_dir / SERVICE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({**self.info(), "token": self.token}, fh)

    def _remove_service_file(self) -> None:
        path = self.settings.data_dir / SERVICE_FILE
        info = read_service_info(self.settings.data_dir)
        if info is None or info.get("pid") == os.getpid():
            path.unlink(missing_ok=True)


def serve_queries(
    settings: Settings,
    searcher: Searcher,
    catalog: Catalog,
    *,
    local_token: bool = True,
    in_flight: Callable[[], dict[str, Any]] | None = None,
    verify: Callable[[list[str], bool], dict[str, Any]] | None = None,
) -> QueryServer:
    """The query API of this process, started: the one wiring that ``run``, the local-mode
    worker and ``api`` share (status from the catalog, the backlog gauge on ``/metrics``).
    ``local_token``: write ``service.json`` so the other commands of the data dir can reach it
    (the process holds the index)."""
    from workers.status import status_report

    check_port_free(settings.api_host, settings.api_port)
    server: QueryServer | None = None

    def status() -> dict[str, Any]:
        return status_report(
            catalog, server.info() if server else None, in_flight() if in_flight else None
        )

    server = QueryServer(
        settings, searcher, status, local_token=local_token, pending_since=catalog.pending_since,
        verify=verify,
    )  # fmt: skip
    server.start()
    return server


def run_api(settings: Settings, say: Callable[[str], object] = print) -> None:
    """``shareindex api``: the query API alone, against a Qdrant server, until SIGINT/SIGTERM."""
    import signal

    from workers.components import open_catalog, open_searcher

    if settings.embedded:
        raise ConfigError(
            "'shareindex api' needs a Qdrant server (SHAREINDEX_QDRANT_URL): in Qdrant local mode "
            "the process that holds the index serves the queries ('shareindex run', or the "
            "worker of the distributed mode)"
        )
    check_port_free(settings.api_host, settings.api_port)
    store, searcher = open_searcher(settings, warm=True)
    catalog = open_catalog(settings)
    try:
        server = serve_queries(settings, searcher, catalog, local_token=False)
        say(f"query API on {server.url}")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.stop()
    finally:
        store.close()
        catalog.close()
