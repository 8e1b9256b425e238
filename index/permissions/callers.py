"""Who is calling the query API, and as which principal it may search.

Configured tokens are stored as SHA-256 hashes only. A token either carries its own principal
(a user and groups), or belongs to a trusted service that searches on behalf of the users whose
principal it passes. The embedded service's own token (in ``service.json``, owner-only) is such
a trusted, admin caller: whoever can read it could read the index files directly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from index.permissions.names import Directory, SystemDirectory
from index.permissions.readers import Principal

if TYPE_CHECKING:  # the directory's module loads ldap3: not for a type
    from index.permissions.directory import LdapDirectory


class Unauthenticated(Exception):
    """No token, or an unknown one (HTTP 401)."""


class Forbidden(Exception):
    """A valid token asking for more than it may (HTTP 403)."""


@dataclass(frozen=True)
class Caller:
    name: str
    user: str | None = None
    groups: tuple[str, ...] = ()
    on_behalf: bool = False
    admin: bool = False


@dataclass(frozen=True)
class TokenEntry:
    sha256: str
    caller: Caller


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and its hash (what goes into the configuration)."""
    token = "si_" + secrets.token_urlsafe(32)
    return token, hash_token(token)


class Authenticator:
    def __init__(
        self,
        tokens: Sequence[TokenEntry],
        names: Directory | None = None,
        expand_groups: bool = True,
        directory: LdapDirectory | None = None,
    ) -> None:
        self.tokens = list(tokens)
        self.names = names or SystemDirectory()
        self.expand_groups = expand_groups
        self.directory = directory

    def caller(self, authorization: str | None) -> Caller:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthenticated("missing bearer token")
        digest = hash_token(authorization[len("Bearer ") :].strip())
        found = None
        for entry in self.tokens:  # compare every entry: the time taken says nothing
            if hmac.compare_digest(entry.sha256, digest):
                found = entry.caller
        if found is None:
            raise Unauthenticated("invalid bearer token")
        return found

    def principal(self, caller: Caller, user: str | None, groups: Sequence[str]) -> Principal:
        """The principal a request searches as: its own, or, for trusted services, the one passed."""
        if caller.on_behalf:
            return self._expand(user, tuple(groups))
        if (user is not None and user != caller.user) or (
            groups and set(groups) != set(caller.groups)
        ):
            raise Forbidden(f"token {caller.name!r} may not search on behalf of another principal")
        return self._expand(caller.user, caller.groups)

    def _expand(self, user: str | None, groups: tuple[str, ...]) -> Principal:
        return principal_of(user, groups, self.expand_groups, self.names, self.directory)


def principal_of(
    user: str | None, groups: tuple[str, ...], expand: bool, names: Directory | None = None,
    directory: LdapDirectory | None = None,
) -> Principal:  # fmt: skip
    """A principal; with ``expand``, the user's groups from the system database are added; with
    a directory, the user's SIDs (UnknownPrincipal when it has no such user: never searched as
    anonymous)."""
    sids: tuple[str, ...] = ()
    if user and directory is not None:
        sids = directory.sids_of(user)
    if user and expand:
        groups = tuple(
            sorted(
                set(groups)
                | (names or SystemDirectory()).groups_of(user.split("\\")[-1].split("@")[0])
            )
        )
    return Principal(user=user, groups=groups, sids=sids)
