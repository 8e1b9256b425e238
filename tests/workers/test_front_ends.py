"""The chat front ends' paths into a running ``shareindex run`` (issue 28), each as the asking
user and never anyone else:

- MCP: the official SDK's streamable-HTTP client lists and calls the tools, signed in with an
  access token from a test identity provider (a key pair and a JWKS on loopback);
- Open WebUI: an on-behalf token plus the user JWT it forwards (minted as Open WebUI mints it),
  or a plain header where the token allows it (LibreChat's);
- Dify: ``POST /retrieval`` as Dify's documentation shows it, its API key a token bound to a user;
- the OpenAPI tool server: the search operation, named and described.

For every path and principal the answer equals ``GET /search``'s for the same principal. Bad
input is a 4xx with one clear line, never a 500 nor another user's document. POSIX principals
here; the NTFS/AD ones against the Samba DC in test_windows_verdict."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.permissions.callers import hash_token
from tests.conftest import run_cli
from tests.helpers import Proc, free_port, system_accounts, wait_until
from tests.idp import (
    IdentityProvider,
    bearer,
    mcp_call,
    new_key,
    openwebui_user_jwt,
    same,
    unsigned,
)

pytestmark = pytest.mark.integration

_RUN = uuid.uuid4().hex[:6]
ANN, BEN, CAT = (f"si{_RUN}_{n}" for n in ("ann", "ben", "cat"))
ENG, HR = f"si{_RUN}_eng", f"si{_RUN}_hr"
USERS = {ANN: [ENG], BEN: [HR], CAT: [ENG, HR]}
DOMAIN = "corp.test"
SECRET = "open-webui-secret-key-of-this-test-" + _RUN  # 32 bytes and more, as HS256 wants
TOKENS = {"svc": "si_svc_" + _RUN, "chat": "si_chat_" + _RUN, "dify": "si_dify_" + _RUN,
          "ann": "si_ann_" + _RUN}  # fmt: skip
QUERIES = ["pump seal replacement", "valve pressure test", "salary review", "safety audit",
           "ポンプ 点検"]  # fmt: skip
#: (path, owner, group, mode, text): who may read what differs by user and group
FILES = [
    ("public/pump.md", None, None, 0o644, "The pump seal is replaced every six months."),
    ("public/valves.txt", None, None, 0o644, "Valve pressure test at 16 bar, twice a year."),
    ("eng/pump-notes.md", ANN, ENG, 0o640, "Pump seal failure analysis: replace the seal kit."),
    ("eng/audit.md", ANN, ENG, 0o640, "Safety audit of the eng lab: valves and pumps."),
    ("hr/salary.txt", BEN, HR, 0o640, "Salary review for the pump maintenance team."),
    ("hr/audit.txt", BEN, HR, 0o640, "Safety audit of the HR files and the salary review."),
    ("ann-only.txt", ANN, ENG, 0o600, "Ann's private notes on the valve pressure test."),
    ("ja/点検.txt", None, None, 0o644, "ポンプの点検は毎月行う。バルブの圧力試験も記録する。"),
]


@dataclass
class Service:
    url: str
    idp: IdentityProvider
    proc: Proc
    config: Path

    def http(self, method: str, path: str, headers: dict[str, str] | None = None,
             body: Any = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), json.load(response)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, dict(exc.headers), json.loads(raw) if raw.startswith(b"{") else raw

    def search(self, user: str, q: str, k: int = 5, mode: str = "hybrid",
               share: str | None = None) -> list[tuple[str, int, float]]:  # fmt: skip
        """``GET /search`` for ``user`` (the trusted service's on-behalf token)."""
        query = {"q": q, "k": k, "mode": mode, "user": user, **({"share": share} if share else {})}
        status, _, hits = self.http("GET", "/search?" + urllib.parse.urlencode(query),
                                    bearer(TOKENS["svc"]))  # fmt: skip
        assert status == 200, hits
        return [(h["metadata"]["path"], h["metadata"]["chunk_index"], h["score"]) for h in hits]

    def mcp(self, headers: dict[str, str], tool: str, args: dict[str, Any]) -> Any:
        return asyncio.run(mcp_call(self.url + "/mcp", headers, tool, args))


def _found(result: Any) -> list[tuple[str, int, float]]:
    assert not result.is_error, result.content
    return [(r["path"], r["chunk"], r["score"]) for r in result.structured_content["results"]]


@pytest.fixture(scope="module")
def accounts() -> Iterator[None]:
    with system_accounts(USERS, "the front-end tests (useradd, chown)"):
        yield


@pytest.fixture(scope="module")
def service(accounts: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("front")
    share = base / "share"
    for rel, owner, group, mode, text in FILES:
        path = share / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o755)
        path.write_text(f"{text}\n\nAppendix of {rel}: the log of the work, page by page.\n")
        if owner:
            shutil.chown(path, owner, group)
        os.chmod(path, mode)
    os.chmod(share, 0o755)
    idp = IdentityProvider()
    config = base / "shareindex.toml"
    tokens = [
        ("svc", {"on_behalf": True}),
        ("chat", {"on_behalf": True, "plain_headers": True}),
        ("dify", {"user": ANN}),
        ("ann", {"user": ANN}),
    ]
    lines = [f'oidc_issuer = "{idp.issuer}"', f'oidc_audience = "{idp.audience}"',
             f'openwebui_jwt_secret = "{SECRET}"', "api_rate_per_s = 0"]  # fmt: skip
    for name, extra in tokens:
        lines += ["[[api_tokens]]", f'name = "{name}"', f'sha256 = "{hash_token(TOKENS[name])}"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    proc = Proc("run", "--share", f"docs={share}", "--data-dir", str(base / "data"), "--port",
                str(port), env={"SHAREINDEX_CONFIG": str(config)})  # fmt: skip
    try:
        proc.wait_for_line("reconciled", 600)
        yield Service(f"http://127.0.0.1:{port}", idp, proc, config)
    finally:
        proc.stop()
        idp.close()


def signed_in(service: Service, user: str, **claims: Any) -> dict[str, str]:
    return bearer(service.idp.token({"preferred_username": f"{user}@{DOMAIN}", **claims}))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.sampled_from([ANN, BEN, CAT]), q=st.sampled_from(QUERIES),
       k=st.integers(1, 8), mode=st.sampled_from(["hybrid", "dense", "sparse"]))  # fmt: skip
def test_the_mcp_tools_answer_each_signed_in_user_as_search_does(
    service: Service, user: str, q: str, k: int, mode: str
) -> None:
    result = service.mcp(signed_in(service, user), "search", {"query": q, "k": k, "mode": mode})
    assert same(_found(result), service.search(user, q, k, mode))
    assert result.content[0].type == "text"
    for n, item in enumerate(result.structured_content["results"], 1):  # a citation per hit
        assert item["source"] == str(Path(service.proc.args[2].split("=", 1)[1]) / item["path"])
        assert f"[{n}] {item['title']} ({item['source']}" in result.content[0].text


def test_the_tools_listed_and_the_neighbours_and_share_arguments(service: Service) -> None:
    tools = asyncio.run(mcp_call(service.url + "/mcp", signed_in(service, CAT), None, {}))
    by_name = {t.name: t for t in tools.tools}
    assert set(by_name) == {"search", "neighbours"}
    schema = by_name["search"].input_schema
    assert schema["required"] == ["query"]
    assert schema["properties"]["k"]["maximum"] == 50 and schema["properties"]["k"]["default"] == 5
    assert {"share", "mode"} <= set(schema["properties"])
    assert by_name["search"].output_schema["properties"]["results"]
    # share: only that share's (one share here: the same hits, and none of an unknown share)
    headers = signed_in(service, CAT)
    assert same(_found(service.mcp(headers, "search", {"query": "pump", "share": "docs"})),
                service.search(CAT, "pump", share="docs"))  # fmt: skip
    assert _found(service.mcp(headers, "search", {"query": "pump", "share": "other"})) == []
    # neighbours: what the API's neighbours endpoint gives the same user, and nothing to another
    hit = service.mcp(headers, "search", {"query": "salary review", "k": 1})
    top = hit.structured_content["results"][0]
    assert top["path"].startswith("hr/")
    around = service.mcp(headers, "neighbours", {"doc_id": top["doc_id"], "chunk": top["chunk"]})
    status, _, expected = service.http(
        "GET", f"/documents/{top['doc_id']}/chunks/{top['chunk']}/neighbours?user={CAT}",
        bearer(TOKENS["svc"]),
    )  # fmt: skip
    assert status == 200
    assert [r["content"] for r in around.structured_content["results"]] == \
        [h["page_content"] for h in expected]  # fmt: skip
    other = service.mcp(signed_in(service, ANN), "neighbours",
                        {"doc_id": top["doc_id"], "chunk": top["chunk"]})  # fmt: skip
    assert _found(other) == []  # ann is not in HR


def test_open_webui_forwards_the_signed_user_and_a_plain_header_only_where_allowed(
    service: Service,
) -> None:
    for user in (ANN, BEN, CAT):
        forwarded = {**bearer(TOKENS["svc"]),
                     "X-OpenWebUI-User-Jwt": openwebui_user_jwt(SECRET, f"{user}@{DOMAIN}", user)}  # fmt: skip
        for q in QUERIES[:3]:
            assert same(_found(service.mcp(forwarded, "search", {"query": q})), service.search(user, q))
            status, _, hits = service.http("GET", "/search?" + urllib.parse.urlencode({"q": q, "k": 5}),
                                           forwarded)  # fmt: skip
            assert status == 200
            assert same([(h["metadata"]["path"], h["metadata"]["chunk_index"], h["score"])
                         for h in hits], service.search(user, q))  # fmt: skip
        # LibreChat's plain header, on the token whose configuration allows it
        plain = {**bearer(TOKENS["chat"]), "X-LibreChat-User-Email": f"{user}@{DOMAIN}"}
        assert same(_found(service.mcp(plain, "search", {"query": "audit"})), service.search(user, "audit"))
    # an on-behalf token that forwards nobody: refused on the paths without a user parameter
    status, _, body = service.http("POST", "/mcp", bearer(TOKENS["svc"]), {})
    assert status == 403 and "forward the signed-in user" in body["detail"]
    # the same plain header on an on-behalf token without plain_headers: refused
    status, _, body = service.http("POST", "/mcp", {**bearer(TOKENS["svc"]),
                                   "X-OpenWebUI-User-Email": f"{ANN}@{DOMAIN}"}, {})  # fmt: skip
    assert status == 403 and "plain header" in body["detail"]
    # a forwarded identity on a token that is not on-behalf: refused, whatever it says
    status, _, body = service.http("GET", "/search?q=pump", {**bearer(TOKENS["ann"]),
                                   "X-OpenWebUI-User-Jwt": openwebui_user_jwt(SECRET, f"{CAT}@{DOMAIN}", CAT)})  # fmt: skip
    assert status == 403 and "not an on-behalf token" in body["detail"]
    # the header JWT signed with another secret
    status, _, body = service.http("GET", "/search?q=pump", {**bearer(TOKENS["svc"]),
                                   "X-OpenWebUI-User-Jwt": openwebui_user_jwt("wrong", f"{CAT}@{DOMAIN}", CAT)})  # fmt: skip
    assert status == 401 and "signature" in body["detail"]


def _dify(service: Service, body: dict[str, Any], token: str | None = TOKENS["dify"]) -> tuple[int, Any]:
    status, _, answer = service.http("POST", "/retrieval", bearer(token) if token else {}, body)
    return status, answer


def test_dify_retrieval_as_its_documentation_shows_it(service: Service) -> None:
    for q in QUERIES:
        for threshold in (0.0, 0.3):
            status, answer = _dify(service, {"knowledge_id": "docs", "query": q,
                                              "retrieval_setting": {"top_k": 4, "score_threshold": threshold}})  # fmt: skip
            assert status == 200, answer
            expected = [(p, c, s) for p, c, s in service.search(ANN, q, 4, "dense") if s >= threshold]
            assert same([(r["metadata"]["path"], r["metadata"]["chunk"], r["score"])
                         for r in answer["records"]], expected)  # fmt: skip
            for record in answer["records"]:
                assert set(record) == {"content", "score", "title", "metadata"}
                assert isinstance(record["metadata"], dict)
    status, every = _dify(service, {"knowledge_id": "*", "query": "audit",
                                    "retrieval_setting": {"top_k": 5, "score_threshold": 0}})  # fmt: skip
    assert status == 200 and {r["metadata"]["path"] for r in every["records"]} <= \
        {f[0] for f in FILES if f[1] in (None, ANN) or f[2] == ENG}  # fmt: skip
    # metadata_condition on path, share and modified, applied
    status, only = _dify(service, {
        "knowledge_id": "docs", "query": "audit", "retrieval_setting": {"top_k": 5, "score_threshold": 0},
        "metadata_condition": {"logical_operator": "and", "conditions": [
            {"name": "path", "comparison_operator": "start with", "value": "eng/"},
            {"name": "share", "comparison_operator": "is", "value": "docs"},
            {"name": "modified", "comparison_operator": "after", "value": "2000-01-01T00:00:00Z"},
        ]}})  # fmt: skip
    assert status == 200 and only["records"]
    assert all(r["metadata"]["path"].startswith("eng/") for r in only["records"])
    status, none = _dify(service, {
        "knowledge_id": "docs", "query": "audit", "retrieval_setting": {"top_k": 5, "score_threshold": 0},
        "metadata_condition": {"conditions": [
            {"name": "modified", "comparison_operator": "before", "value": "2000-01-01"}]}})  # fmt: skip
    assert status == 200 and none == {"records": []}
    # what cannot be applied is refused, never ignored
    status, refused = _dify(service, {
        "knowledge_id": "docs", "query": "audit", "retrieval_setting": {"top_k": 5, "score_threshold": 0},
        "metadata_condition": {"conditions": [
            {"name": "author", "comparison_operator": "is", "value": "ann"}]}})  # fmt: skip
    assert status == 400 and "'author' cannot be filtered on" in refused["error_msg"]
    # Dify's error codes
    status, answer = _dify(service, {"knowledge_id": "nope", "query": "x",
                                     "retrieval_setting": {"top_k": 1, "score_threshold": 0}})  # fmt: skip
    assert (status, answer["error_code"]) == (404, 2001)
    status, answer = _dify(service, {"knowledge_id": "docs", "query": "x"}, token=None)
    assert (status, answer["error_code"]) == (403, 1001)
    status, answer = _dify(service, {"knowledge_id": "docs", "query": "x"}, token="si_not_a_key")
    assert (status, answer["error_code"]) == (403, 1002)


def test_the_openapi_document_names_and_describes_the_search(service: Service) -> None:
    status, _, doc = service.http("GET", "/openapi.json")
    assert status == 200
    operation = doc["paths"]["/search"]["get"]
    assert operation["operationId"] == "search_documents"
    assert "as the signed-in user" in operation["description"]
    assert {p["name"] for p in operation["parameters"]} >= {"q", "k", "share"}


def test_bad_tokens_and_bad_input_get_one_clear_line_and_nothing_else(service: Service) -> None:
    idp = service.idp
    status, headers, body = service.http("POST", "/mcp", {}, {})
    assert status == 401 and body == {"detail": "missing bearer token"}
    challenge = headers["www-authenticate"] if "www-authenticate" in headers else headers["WWW-Authenticate"]
    assert challenge == f'Bearer resource_metadata="{service.url}/.well-known/oauth-protected-resource/mcp"'
    status, _, meta = service.http("GET", "/.well-known/oauth-protected-resource/mcp")
    assert status == 200 and meta["resource"] == f"{service.url}/mcp"
    assert meta["authorization_servers"] == [idp.issuer]
    me = {"preferred_username": f"{ANN}@{DOMAIN}"}
    now = int(__import__("time").time())
    bad = {
        "the token is not for this API": idp.token({**me, "aud": "api://another"}),
        "issuer": idp.token({**me, "iss": "https://evil.example"}),
        "expired": idp.token({**me, "exp": now - 3600, "nbf": now - 7200}),
        "not valid yet": idp.token({**me, "nbf": now + 3600}),
        "signature does not verify": idp.token(me, key=new_key()),
        "is not one of the issuer's": idp.token(me, kid="unknown-kid"),
        "algorithm 'none'": unsigned({**me, "iss": idp.issuer, "aud": idp.audience, "exp": now + 60}),
        "algorithm 'HS256'": idp.token(me, key="a-shared-secret", alg="HS256"),
    }
    for why, token in bad.items():
        for method, path, payload in (("GET", "/search?q=pump", None), ("POST", "/mcp", {})):
            status, _, body = service.http(method, path, bearer(token), payload)
            assert status == 401 and why in body["detail"], (why, path, body)
            assert "\n" not in body["detail"]
    # a signed token for an account the system does not have: 403 on every path
    nobody = signed_in(service, f"si{_RUN}_nobody")
    for method, path, payload in (("GET", "/search?q=pump", None), ("POST", "/mcp", {}),
                                  ("POST", "/retrieval", {"knowledge_id": "docs", "query": "x"})):  # fmt: skip
        status, _, body = service.http(method, path, nobody, payload)
        assert status == 403, (path, body)
    # k out of range, and a 1 MB query
    ann = signed_in(service, ANN)
    for k in (0, 10_000):
        status, _, _ = service.http("GET", f"/search?q=pump&k={k}", ann)
        assert status == 422
        result = service.mcp(ann, "search", {"query": "pump", "k": k})
        assert result.is_error and "k" in result.content[0].text
    huge = "pump " * 200_000
    for method, path, payload in (("GET", "/search?" + urllib.parse.urlencode({"q": huge}), None),
                                  ("POST", "/retrieval", {"knowledge_id": "docs", "query": huge}),
                                  ("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                   "params": {"name": "search", "arguments": {"query": huge}}})):  # fmt: skip
        status, _, body = service.http(method, path, ann, payload)
        assert status == 413 and "request larger than" in body["detail"], (path, status)
    assert service.proc.proc.poll() is None


def test_the_identity_providers_keys_are_cached_and_fetched_again_on_rotation(service: Service) -> None:
    idp = service.idp
    earlier = signed_in(service, BEN)
    assert _found(service.mcp(earlier, "search", {"query": "salary"}))
    before = idp.requests.count("/keys")
    for _ in range(5):  # new tokens, same key: not fetched per request, nor per token
        assert _found(service.mcp(signed_in(service, BEN), "search", {"query": "salary"}))
    assert idp.requests.count("/keys") == before
    assert idp.requests.count("/.well-known/openid-configuration") == 1  # jwks_uri, once
    idp.rotate()
    fresh = signed_in(service, BEN)

    def accepted() -> bool:  # a new kid: the keys fetched again (at most once per 10 s)
        return service.http("GET", "/search?q=salary", fresh)[0] == 200

    wait_until(accepted, 60, "the rotated key")
    assert idp.requests.count("/keys") == before + 1
    assert _found(service.mcp(fresh, "search", {"query": "salary"}))
    status, _, _ = service.http("GET", "/search?q=pump", earlier)  # verified: good until exp
    assert status == 200


def test_token_create_as_the_readme_says_gives_a_token_the_running_service_takes(
    service: Service,
) -> None:
    """``shareindex token create`` through the real command line: its lines added to the config
    file (which ``run`` reloads), its token asks as the user it is bound to, on every path."""
    proc = run_cli("token", "create", "dify-cat", "--user", CAT)
    assert proc.returncode == 0, proc.stderr
    token = proc.stderr.strip().rsplit(": ", 1)[1]
    assert token.startswith("si_") and f'user = "{CAT}"' in proc.stdout
    refused = run_cli("token", "create", "x", "--plain-headers", "--user", CAT)
    assert refused.returncode != 0 and "--plain-headers is for an --on-behalf token" in refused.stderr
    with service.config.open("a") as fh:
        fh.write("\n" + proc.stdout)
    wait_until(lambda: service.http("GET", "/search?q=salary", bearer(token))[0] == 200, 120,
               "the reloaded configuration")  # fmt: skip
    status, _, hits = service.http("GET", "/search?" + urllib.parse.urlencode({"q": "salary", "k": 5}),
                                   bearer(token))  # fmt: skip
    assert same([(h["metadata"]["path"], h["metadata"]["chunk_index"], h["score"]) for h in hits],
                service.search(CAT, "salary"))  # fmt: skip
    status, answer = _dify(service, {"knowledge_id": "docs", "query": "salary review",
                                     "retrieval_setting": {"top_k": 3, "score_threshold": 0}}, token)  # fmt: skip
    assert status == 200 and any(r["metadata"]["path"].startswith("hr/") for r in answer["records"])

