"""Who is calling the query API, and as which principal it may search.

Who asks is decided per request, and only from what is signed:

- a configured ShareIndex token (stored as a SHA-256 hash only), which either carries its own
  principal (a user and groups) or belongs to a trusted service that searches on behalf of the
  users it names (the embedded service's own token, in ``service.json``, owner-only, is such a
  trusted, admin caller: whoever can read it could read the index files directly);
- an OpenID Connect access token from the company's identity provider (``index.permissions.oidc``):
  the signed-in user;
- an on-behalf token plus the identity its front end forwards: Open WebUI's signed header JWT, or
  a plain header where that token's configuration allows plain headers.

A signed-in or forwarded name is resolved in the directory (SIDs, groups; a disabled, locked-out
or expired account is refused) or, without one, to the local account of that name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from index.permissions.directory import UnknownPrincipal
from index.permissions.names import Directory, SystemDirectory
from index.permissions.readers import Principal

if TYPE_CHECKING:  # the modules of the directory (ldap3) and of the JWTs: not for a type
    from index.permissions.directory import LdapDirectory
    from index.permissions.oidc import ForwardedJwt, OidcVerifier

#: the header Open WebUI forwards the signed-in user in, signed (HS256, openwebui_jwt_secret)
USER_JWT_HEADER = "x-openwebui-user-jwt"
#: plain headers a front end may name its user in (Open WebUI's; LibreChat's from
#: {{LIBRECHAT_USER_EMAIL}}), believed only for on-behalf tokens with plain_headers
PLAIN_USER_HEADERS = ("x-openwebui-user-email", "x-librechat-user-email", "x-user-email")


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
    #: an on-behalf token whose front end may name its user in a plain (unsigned) header
    plain_headers: bool = False
    #: signed in at the identity provider: ``user`` is the token's, and only that
    signed_in: bool = False


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
        oidc: OidcVerifier | None = None,
        forwarded: ForwardedJwt | None = None,
    ) -> None:
        self.tokens = list(tokens)
        self.names = names or SystemDirectory()
        self.expand_groups = expand_groups
        self.directory = directory
        self.oidc = oidc
        self.forwarded = forwarded

    def caller(self, authorization: str | None) -> Caller:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthenticated("missing bearer token")
        token = authorization[len("Bearer ") :].strip()
        digest = hash_token(token)
        found = None
        for entry in self.tokens:  # compare every entry: the time taken says nothing
            if hmac.compare_digest(entry.sha256, digest):
                found = entry.caller
        if found is not None:
            return found
        if self.oidc is not None and self.oidc.looks_like_jwt(token):
            # here: PyJWT and cryptography cost 0.2 s that `token create` does not need
            from index.permissions.oidc import TokenRejected

            try:
                user = self.oidc.user(token)
            except TokenRejected as exc:
                raise Unauthenticated(str(exc)) from exc
            return Caller(f"oidc:{user}", user=user, signed_in=True)
        raise Unauthenticated("invalid bearer token")

    def forwarded_user(self, caller: Caller, headers: Mapping[str, str]) -> str | None:
        """The user a front end names in the request's headers (None: none named). Only an
        on-behalf token may name one; a plain header only where its configuration says so."""
        signed = headers.get(USER_JWT_HEADER)
        plain = next((headers[h] for h in PLAIN_USER_HEADERS if headers.get(h)), None)
        if signed is None and plain is None:
            return None
        if not caller.on_behalf:
            raise Forbidden(f"token {caller.name!r} is not an on-behalf token: it may not "
                            "forward a user's identity")  # fmt: skip
        if signed is not None:
            if self.forwarded is None:
                raise Forbidden("a forwarded user JWT needs openwebui_jwt_secret in the "
                                "configuration")  # fmt: skip
            from index.permissions.oidc import TokenRejected  # (as above)

            try:
                return self.forwarded.user(signed)
            except TokenRejected as exc:
                raise Unauthenticated(str(exc)) from exc
        if not caller.plain_headers:
            raise Forbidden(f"token {caller.name!r} may not name its user in a plain header "
                            "(plain_headers is off): forward the signed user JWT")  # fmt: skip
        return plain

    def principal(
        self, caller: Caller, user: str | None, groups: Sequence[str], forwarded: str | None = None
    ) -> Principal:
        """The principal a request searches as: its own; for a signed-in caller, the token's
        user; for trusted services, the one forwarded or passed."""
        named = forwarded if forwarded is not None else (caller.user if caller.signed_in else None)
        if named is not None:
            if (user is not None and user != named) or groups:
                raise Forbidden(f"{caller.name!r} asks as {named!r}: it may not name another "
                                "principal")  # fmt: skip
            return self.signed_in(named)
        if caller.on_behalf:
            return self._expand(user, tuple(groups))
        if (user is not None and user != caller.user) or (
            groups and set(groups) != set(caller.groups)
        ):
            raise Forbidden(f"token {caller.name!r} may not search on behalf of another principal")
        return self._expand(caller.user, caller.groups)

    def signed_in(self, name: str) -> Principal:
        """A signed-in name (a UPN, an e-mail address, an account name) as a principal: in the
        directory (its SIDs; UnknownPrincipal, or InactiveAccount for a disabled, locked-out or
        expired account), else the local account of that name (of an address, the part before
        the @; UnknownPrincipal when the system has none)."""
        account = local_account(name)
        sids: tuple[str, ...] = ()
        if self.directory is not None:
            sids = self.directory.sids_of(name)
        elif self.names.uid(account) is None:
            raise UnknownPrincipal(f"no account {account!r} on this system (signed in as "
                                   f"{name!r})")  # fmt: skip
        groups = tuple(sorted(self.names.groups_of(account))) if self.expand_groups else ()
        return Principal(user=account, groups=groups, sids=sids)

    def _expand(self, user: str | None, groups: tuple[str, ...]) -> Principal:
        return principal_of(user, groups, self.expand_groups, self.names, self.directory)


def local_account(name: str) -> str:
    """The account name in ``DOMAIN\\name``, ``name@domain`` or ``name``."""
    return name.split("\\", 1)[-1].split("@", 1)[0]


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
            sorted(set(groups) | (names or SystemDirectory()).groups_of(local_account(user)))
        )
    return Principal(user=user, groups=groups, sids=sids)
