"""A test identity provider on loopback: an RSA key pair, its discovery document and key set
(JWKS) served over HTTP, and access tokens signed with it, as Keycloak, AD FS or Entra ID sign
them (RS256, ``kid`` in the header, ``iss``/``aud``/``exp``/``nbf``). Also Open WebUI's header
JWT, minted as Open WebUI mints it (HS256 with its secret key), and the front ends' client side:
the MCP SDK's streamable-HTTP client."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class IdentityProvider:
    def __init__(self) -> None:
        self.key = new_key()
        self.kid = uuid.uuid4().hex[:8]
        self.audience = "api://shareindex-test"
        self.requests: list[str] = []  # the paths fetched (the key set's cache is observable)
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                provider.requests.append(self.path)
                if self.path == "/.well-known/openid-configuration":
                    body: Any = {"issuer": provider.issuer, "jwks_uri": f"{provider.url}/keys"}
                elif self.path == "/keys":
                    body = {"keys": [provider.jwk()]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.url  # as Keycloak's realm URL: the discovery document is under it
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwk(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def rotate(self) -> None:
        """A new signing key (the old one is no longer published)."""
        self.key, self.kid = new_key(), uuid.uuid4().hex[:8]

    def token(self, claims: dict[str, Any] | None = None, *, key: Any = None,
              kid: str | None = None, alg: str = "RS256", lifetime_s: float = 300) -> str:  # fmt: skip
        now = int(time.time())
        body = {"iss": self.issuer, "aud": self.audience, "iat": now, "nbf": now,
                "exp": now + int(lifetime_s), "sub": uuid.uuid4().hex, **(claims or {})}  # fmt: skip
        return jwt.encode(body, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def unsigned(claims: dict[str, Any]) -> str:
    """A token with ``alg: none`` (no signature at all)."""
    return jwt.encode(claims, None, algorithm="none")


def openwebui_user_jwt(secret: str, email: str, name: str, lifetime_s: float = 300) -> str:
    """X-OpenWebUI-User-Jwt as Open WebUI signs it: HS256 with its secret key."""
    claims = {"email": email, "name": name, "iss": "open-webui",
              "exp": int(time.time() + lifetime_s)}  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


def same(found: list[tuple[str, int, float]], expected: list[tuple[str, int, float]]) -> bool:
    """The same hits in the same order; at the cut (hits with the lowest score, where the
    engine may return any of equals) the same number."""
    if [f[2] for f in found] != [e[2] for e in expected]:
        return False
    cut = found[-1][2] if found else None
    return [f for f in found if f[2] != cut] == [e for e in expected if e[2] != cut]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def mcp_call(url: str, headers: dict[str, str], tool: str | None, args: dict[str, Any]) -> Any:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        if tool is None:
            return await session.list_tools()
        return await session.call_tool(tool, args)
