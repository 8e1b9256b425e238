"""Searching from the command line: through the running service when one holds the index (one
process holds an embedded index; ``service.json`` in the data dir says where it answers),
otherwise by opening the index here."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from workers.settings import ConfigError, Settings

if TYPE_CHECKING:  # the vector index's module loads numpy and the parsers: not for a type
    from index.vectors import SearchMode

#: in the data dir: where the running service answers, and the token it gives its own commands
SERVICE_FILE = "service.json"


def read_service_info(data_dir: Path) -> dict[str, Any] | None:
    """The running service of a data dir, if its process is alive."""
    try:
        info = json.loads((data_dir / SERVICE_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info



class SearchClient(Protocol):
    def search(self, query: str, user: str | None, groups: tuple[str, ...], k: int, mode: str,
               context: int = 0) -> list[dict[str, Any]]: ...  # fmt: skip


def _mode(mode: str) -> SearchMode:
    if mode not in ("hybrid", "dense", "sparse"):
        raise ConfigError(f"unknown search mode {mode!r}: hybrid, dense or sparse")
    return mode  # type: ignore[return-value]


class ServiceError(Exception):
    """The running service could not answer a request."""


class ServiceClient:
    """The running service's query API over loopback, with the standard library's HTTP client
    (measured: httpx costs 110 ms to import, a tenth of a search from the command line)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self._token = token

    def _get(self, route: str, params: list[tuple[str, Any]], timeout: float) -> tuple[int, bytes]:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}{route}" + (f"?{query}" if query else ""),
                                         headers={"Authorization": f"Bearer {self._token}"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def search(self, query: str, user: str | None, groups: tuple[str, ...], k: int, mode: str,
               context: int = 0) -> list[dict[str, Any]]:  # fmt: skip
        params: list[tuple[str, Any]] = [("q", query), ("k", k), ("mode", mode),
                                         ("context", context)]  # fmt: skip
        if user:
            params.append(("user", user))
        params += [("group", g) for g in groups]
        try:
            status, body = self._get("/search", params, timeout=120)
        except OSError as exc:
            raise ServiceError(f"the running service at {self.url} did not answer: {exc}") from exc
        if status == 403:  # the principal: unknown, disabled, another's
            raise ServiceError(_detail(body))
        if status != 200:
            text = body.decode("utf-8", "replace")[:300]
            raise ServiceError(f"the running service at {self.url} answered {status}: {text}")
        result: list[dict[str, Any]] = json.loads(body)
        return result

    def alive(self) -> bool:
        try:
            return self._get("/healthz", [], timeout=10)[0] == 200
        except OSError:
            return False

    def close(self) -> None:
        pass


class LocalClient:
    def __init__(self, settings: Settings) -> None:
        from workers.components import make_directory, open_searcher

        if settings.embedded and not (
            settings.index_path.exists() or settings.qdrant_path.exists()
        ):
            raise ConfigError(
                f"no index in {settings.data_dir}: run 'shareindex sync' or 'shareindex run' first"
            )
        self.settings = settings
        self.directory = make_directory(settings)
        self.store, self.searcher = open_searcher(settings)

    def search(self, query: str, user: str | None, groups: tuple[str, ...], k: int, mode: str,
               context: int = 0) -> list[dict[str, Any]]:  # fmt: skip
        from index.permissions.callers import principal_of

        principal = principal_of(user, groups, self.settings.expand_groups, None, self.directory)
        hits = self.searcher.search(query, principal, k=k, mode=_mode(mode), context=context)
        return [h.to_dict() for h in hits]

    def close(self) -> None:
        self.store.close()


@contextmanager
def search_client(settings: Settings) -> Iterator[SearchClient]:
    info = read_service_info(settings.data_dir)
    client: ServiceClient | LocalClient | None = None
    if info is not None:
        client = ServiceClient(info["url"], info["token"])
        if not client.alive():  # a stale service.json (the process is gone, its pid reused)
            client.close()
            client = None
    if client is None:
        client = LocalClient(settings)
    try:
        yield client
    finally:
        client.close()


def _detail(body: bytes) -> str:
    """The API's one-line reason (``{"detail": ...}``), else the body's start."""
    try:
        return str(json.loads(body)["detail"])[:500]
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:300]
