"""Who asks, by the company's sign-in (query side): an OAuth 2 / OpenID Connect access token (a JWT
from Entra ID, AD FS, Keycloak ...) checked against the issuer's keys, and the signed identity a
trusted front end forwards (Open WebUI's ``X-OpenWebUI-User-Jwt``).

An access token's signature is checked against the issuer's JWKS (``oidc_jwks_url``, else the
``jwks_uri`` of the issuer's discovery document), fetched once and again only for a key id it does
not know; ``iss``, ``aud``, ``exp`` and ``nbf`` are checked; only asymmetric algorithms are taken
(never ``none``, never an HMAC the public key could forge). The user is the first of the claims
``oidc_user_claim`` names (default: ``upn``, then ``preferred_username``, then ``email``). Checked
tokens are cached until they expire (at most ``CACHE_SIZE`` of them)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections import OrderedDict
from typing import Any

import jwt

#: the algorithms an issuer's access tokens may be signed with
ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
DEFAULT_CLAIMS = ("upn", "preferred_username", "email")
CACHE_SIZE = 4096
#: clock skew allowed between the issuer and this server
LEEWAY_S = 30


class BadToken(Exception):
    """The token is not one this server accepts (the reason, in one line: HTTP 401)."""


class IssuerUnavailable(Exception):
    """The issuer's keys cannot be fetched (HTTP 503)."""


class OidcVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str | None = None,
                 user_claim: str | None = None, timeout_s: float = 10.0) -> None:  # fmt: skip
        self.issuer = issuer
        self.audience = audience
        self.user_claims = (user_claim,) if user_claim else DEFAULT_CLAIMS
        self.timeout_s = timeout_s
        self._jwks_url = jwks_url
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def user(self, token: str) -> str:
        """The user a valid access token names; BadToken says why one is not valid."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(digest)
                return hit[1]
        claims = self._decode(token)
        user = next((str(claims[c]) for c in self.user_claims if claims.get(c)), None)
        if user is None:
            raise BadToken(f"the token names no user ({' / '.join(self.user_claims)})")
        with self._lock:
            self._cache[digest] = (float(claims["exp"]), user)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return user

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise BadToken(f"not a JWT: {exc}") from exc
        if header.get("alg") not in ASYMMETRIC:
            raise BadToken(f"algorithm {header.get('alg')!r} is not accepted")
        try:
            key = self._client().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailable(f"the issuer's keys cannot be fetched: {exc}") from exc
        except jwt.PyJWKClientError as exc:  # a key id the issuer does not have (after a refetch)
            raise BadToken(f"signed with an unknown key: {exc}") from exc
        try:
            return jwt.decode(
                token, key.key, algorithms=ASYMMETRIC, audience=self.audience,
                issuer=self.issuer, leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            raise BadToken(str(exc)) from exc

    def _client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._keys is None:
                url = self._jwks_url or self._discover()
                self._keys = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600,
                                             timeout=int(self.timeout_s))  # fmt: skip
            return self._keys

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as reply:  # noqa: S310
                found = json.loads(reply.read())
        except (OSError, ValueError) as exc:
            raise IssuerUnavailable(f"the issuer's discovery document {url}: {exc}") from exc
        jwks = found.get("jwks_uri") if isinstance(found, dict) else None
        if not jwks:
            raise IssuerUnavailable(f"{url} names no jwks_uri: set oidc_jwks_url")
        return str(jwks)


def openwebui_user(token: str, secret: str) -> str:
    """The user (e-mail) of Open WebUI's ``X-OpenWebUI-User-Jwt``: HS256 with the shared secret,
    issued by ``open-webui``, not expired; BadToken says why not."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer="open-webui",
                            leeway=LEEWAY_S, options={"require": ["exp", "iss"]})  # fmt: skip
    except jwt.PyJWTError as exc:
        raise BadToken(f"X-OpenWebUI-User-Jwt: {exc}") from exc
    email = claims.get("email")
    if not email:
        raise BadToken("X-OpenWebUI-User-Jwt names no email")
    return str(email)
