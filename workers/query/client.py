"""Searching from the command line: through the running service when one holds the index (one
process holds an embedded index; ``service.json`` in the data dir says where it answers),
otherwise by opening the index here."""

from __future__ import annotations

import json
import os
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
    def __init__(self, url: str, token: str) -> None:
        import httpx

        self.url = url
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )

    def search(self, query: str, user: str | None, groups: tuple[str, ...], k: int, mode: str,
               context: int = 0) -> list[dict[str, Any]]:  # fmt: skip
        params: list[tuple[str, str | int | float | bool | None]] = [("q", query), ("k", k), ("mode", mode),
                                                                       ("context", context)]  # fmt: skip
        if user:
            params.append(("user", user))
        params += [("group", g) for g in groups]
        response = self._http.get("/search", params=params)
        if response.status_code == 403:  # the principal: unknown, disabled, another's
            raise ServiceError(_detail(response))
        if response.status_code != 200:
            raise ServiceError(
                f"the running service at {self.url} answered {response.status_code}: {response.text[:300]}"
            )
        result: list[dict[str, Any]] = response.json()
        return result

    def alive(self) -> bool:
        import httpx

        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()


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


def _detail(response: Any) -> str:
    """The API's one-line reason (``{"detail": ...}``), else the body's start."""
    try:
        return str(response.json()["detail"])[:500]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]
