"""Who asks, per request, for every path of the query API (``/search``, ``/mcp``,
``/retrieval``): the caller (a ShareIndex token, an identity provider's access token), the user a
trusted front end forwards, and the principal they search as. Never a header nobody signed
(``index.permissions.callers``).

A request that names nobody is ``401`` with ``WWW-Authenticate: Bearer resource_metadata=...``
(RFC 9728, as the MCP authorization spec asks, so that an MCP client finds the sign-in); a
valid caller asking for what it may not, or an unknown, disabled, locked-out or expired account,
``403``; a directory that does not answer, ``503``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from index.permissions.callers import Authenticator, Caller, Forbidden, Unauthenticated
from index.permissions.directory import DirectoryUnavailable, UnknownPrincipal
from index.permissions.readers import Principal
from workers.query.results import Sources

METADATA_PATH = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class FrontEnds:
    """What the chat front ends' paths need beyond the search: where people open the files,
    the URL the API is reached at, the identity provider that signs users in."""

    sources: Sources = field(default_factory=Sources)
    public_url: str | None = None
    issuer: str | None = None
    mcp: bool = True


class Refused(Exception):
    """A request that may not search: the HTTP status and one line that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def bad_name(name: str) -> str | None:
    """Why a user or group name from a request cannot be a principal (None: it can)."""
    if len(name) > 512:
        return "are at most 512 characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "may not contain control characters"
    return None


def identify_caller(auth: Authenticator, authorization: str | None) -> Caller:
    try:
        return auth.caller(authorization)
    except Unauthenticated as exc:
        raise Refused(401, str(exc)) from exc


def identify(
    auth: Authenticator,
    headers: Mapping[str, str],
    user: str | None = None,
    groups: Sequence[str] = (),
    *,
    named: bool = False,
) -> Principal:
    """The principal a request searches as (``user``/``groups``: an on-behalf token's choice,
    from the query string), or Refused. ``named``: a path with no ``user`` parameter (MCP,
    Dify), where an on-behalf token must forward its user (else it would ask as nobody)."""
    for name in (user or "", *groups):
        problem = bad_name(name)
        if problem:
            raise Refused(400, f"user and group names {problem}")
    caller = identify_caller(auth, headers.get("authorization"))
    try:
        forwarded = auth.forwarded_user(caller, headers)
        problem = bad_name(forwarded) if forwarded is not None else None
        if problem:
            raise Refused(400, f"the forwarded user name {problem}")
        if named and caller.on_behalf and forwarded is None:
            raise Refused(403, f"token {caller.name!r} asks on behalf of users: forward the "
                          "signed-in user (X-OpenWebUI-User-Jwt, or a plain header where "
                          "allowed)")  # fmt: skip
        return auth.principal(caller, user, groups, forwarded)
    except Unauthenticated as exc:  # a forwarded JWT that does not verify
        raise Refused(401, str(exc)) from exc
    except (Forbidden, UnknownPrincipal) as exc:  # never another user's, never anonymous
        raise Refused(403, str(exc)) from exc
    except DirectoryUnavailable as exc:
        raise Refused(503, str(exc)) from exc


def public_base(request: Request, front: FrontEnds) -> str:
    return (front.public_url or str(request.base_url)).rstrip("/")


def challenge(request: Request, front: FrontEnds) -> dict[str, str]:
    """The 401's header: where the protected-resource metadata is (for /mcp, its own)."""
    suffix = "/mcp" if request.url.path.rstrip("/").endswith("/mcp") else ""
    where = f"{public_base(request, front)}{METADATA_PATH}{suffix}"
    return {"WWW-Authenticate": f'Bearer resource_metadata="{where}"'}


def resource_metadata(request: Request, front: FrontEnds, resource_path: str) -> dict[str, Any]:
    """OAuth 2.0 Protected Resource Metadata (RFC 9728) of the API or of its MCP endpoint."""
    base = public_base(request, front)
    return {
        "resource": base + resource_path,
        "authorization_servers": [front.issuer] if front.issuer else [],
        "bearer_methods_supported": ["header"],
        "resource_name": "ShareIndex",
        "resource_documentation": f"{base}/docs",
    }
