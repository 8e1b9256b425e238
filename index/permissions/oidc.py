"""Signed identities: an OpenID Connect access token (a JWT) from the company's identity
provider (Entra ID, AD FS, Keycloak), and the identity a trusted chat front end forwards in a
header it signs (Open WebUI's ``X-OpenWebUI-User-Jwt``).

Only what is signed names a user: the provider's token is checked against its published keys
(asymmetric algorithms only: ``alg: none`` and HS256 with a public key are refused), its issuer,
audience and lifetime; the front end's header against the secret the operator shares with it.
Keys are cached and fetched again on an unknown ``kid`` (at most once per ``refetch_s``), never
per request; a verified token is cached until it expires.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import jwt

#: what a signed-in user's name is read from, first found wins
DEFAULT_USER_CLAIMS = ("upn", "preferred_username", "email")
_ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
               "EdDSA")  # fmt: skip


class TokenRejected(Exception):
    """A token that names nobody (HTTP 401); the message says why in one line."""


def fetch_json(url: str, timeout: float = 10.0) -> Any:
    """A JSON document over HTTP(S) (the discovery document, the key set)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (configured URL)
        return json.load(response)


class _Verified:
    """Verified tokens by hash until they expire (bounded): a chat asks many times per token."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.items: dict[str, tuple[float, str]] = {}
        self.lock = threading.Lock()

    def get(self, token: str) -> str | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self.lock:
            found = self.items.get(key)
        if found is None or found[0] <= time.time():
            return None
        return found[1]

    def put(self, token: str, expires: float, user: str) -> None:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self.lock:
            if len(self.items) >= self.size:
                now = time.time()
                self.items = {k: v for k, v in self.items.items() if v[0] > now}
                if len(self.items) >= self.size:
                    self.items.clear()
            self.items[key] = (expires, user)


def _user_of(claims: dict[str, Any], names: Sequence[str]) -> str:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise TokenRejected(f"the token names no user (no claim {' / '.join(names)})")


class OidcVerifier:
    """Access tokens of one issuer for one audience (settings ``oidc_*``)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        user_claim: str | None = None,
        *,
        fetch: Callable[[str], Any] = fetch_json,
        refetch_s: float = 10.0,
        leeway_s: float = 30.0,
    ) -> None:
        self.issuer = issuer  # as the tokens' iss claim spells it
        self.audience = audience
        self.jwks_url = jwks_url
        self.claims = (user_claim,) if user_claim else DEFAULT_USER_CLAIMS
        self.fetch = fetch
        self.refetch_s = refetch_s
        self.leeway_s = leeway_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()
        self._verified = _Verified()

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        return token.count(".") == 2 and not token.startswith("si_")

    def user(self, token: str) -> str:
        """The signed-in user's name (the configured claim), or TokenRejected."""
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"not a JWT: {exc}") from exc
        alg = header.get("alg")
        if alg not in _ASYMMETRIC:
            raise TokenRejected(f"token algorithm {alg!r} is not accepted (only signed with the "
                                "identity provider's published keys)")  # fmt: skip
        key = self._key(header.get("kid"))
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway_s, options={"require": ["exp", "iss", "aud"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenRejected("the token is not valid yet (nbf)") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected(f"the token is not for this API (audience is not "
                                f"{self.audience!r})") from exc  # fmt: skip
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected(f"the token's issuer is not {self.issuer!r}") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("the token's signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the token is not valid: {exc}") from exc
        user = _user_of(claims, self.claims)
        self._verified.put(token, float(claims["exp"]), user)
        return user

    def _key(self, kid: object) -> jwt.PyJWK:
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token names no signing key (kid)")
        with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() - self._fetched_at >= self.refetch_s:
                self._refresh()  # a new key (rotation): fetched again, at most once per refetch_s
                key = self._keys.get(kid)
        if key is None:
            raise TokenRejected(f"the token's signing key {kid!r} is not one of the issuer's")
        return key

    def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            url = self.jwks_url or self._discover()
            keys = jwt.PyJWKSet.from_dict(self.fetch(url))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise TokenRejected(f"the identity provider's keys cannot be read: {exc}") from exc
        self._keys = {k.key_id: k for k in keys.keys if k.key_id}

    def _discover(self) -> str:
        document = self.fetch(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
        url = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(url, str):
            raise ValueError("the discovery document has no jwks_uri")
        self.jwks_url = url
        return url


#: the issuer Open WebUI writes into the header JWT it forwards
OPENWEBUI_ISSUER = "open-webui"


class ForwardedJwt:
    """Open WebUI's ``X-OpenWebUI-User-Jwt``: HS256 with the secret shared with ShareIndex
    (``openwebui_jwt_secret``), claims ``email``, ``name``, ``iss`` = open-webui, ``exp``."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._verified = _Verified()

    def user(self, token: str) -> str:
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], issuer=OPENWEBUI_ISSUER,
                                options={"require": ["exp", "iss"]})  # fmt: skip
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("the forwarded user JWT has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("the forwarded user JWT's signature does not verify "
                                "(openwebui_jwt_secret)") from exc  # fmt: skip
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the forwarded user JWT is not valid: {exc}") from exc
        user = _user_of(claims, ("email",))
        self._verified.put(token, float(claims["exp"]), user)
        return user
