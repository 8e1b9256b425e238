"""The query API under hostile input (issue 20, part 5): hypothesis throws huge, empty, odd and
malformed parameters and tokens at /search and /documents; every answer is a 4xx with a reason
or a 200 whose every hit the caller may read, never a 500. The index is a real one (Qdrant
Edge) of a share whose documents have different readers."""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.permissions.callers import Authenticator, Caller, TokenEntry, hash_token
from index.permissions.readers import may_read
from workers.query.app import Limits, create_app
from workers.runtime import Runtime, open_runtime
from workers.settings import load_settings

pytestmark = pytest.mark.integration
TOKENS = {"alice": "si_alice_token", "service": "si_service_token"}
CALLERS = {
    "alice": Caller("alice", user="alice", groups=("eng",)),
    "service": Caller("service", on_behalf=True),
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    base = tmp_path_factory.mktemp("fuzz")
    share = base / "share"
    share.mkdir()
    for name, mode in (("public.txt", 0o644), ("secret.txt", 0o600), ("eng.txt", 0o640)):
        (share / name).write_text(f"The pump report {name}: pressure, gaskets and valves.")
        os.chmod(share / name, mode)
    rt = open_runtime(load_settings(data_dir=base / "data", shares={"f": share}), warm=False)
    rt.indexer.sync_share("f")
    yield rt
    rt.close()


def _app(rt: Runtime, limits: Limits) -> tuple[TestClient, Authenticator]:
    entries = [TokenEntry(hash_token(TOKENS[n]), c) for n, c in CALLERS.items()]
    auth = Authenticator(entries, expand_groups=True)
    app = create_app(rt.searcher, lambda: {"documents": {}, "freshness": {}, "behind_s": {}}, auth,
                     limits=limits)  # fmt: skip
    return TestClient(app, raise_server_exceptions=False), auth


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> tuple[TestClient, Authenticator]:
    return _app(runtime, Limits(rate_per_s=0))


header_text = st.text(alphabet=string.printable.strip() + " ", max_size=80)
odd_text = (
    st.text(max_size=300)
    | st.text(max_size=5000)
    | st.sampled_from(
        ["", " ", "\x00", "\u202e", "𝔘𝔫𝔦", "../../etc/passwd", "' OR 1=1 --", "a" * 4001]
    )
)


def _readable(
    auth: Authenticator, who: str | None, user: Any, groups: list[str], hits: Any
) -> None:
    caller = CALLERS[who] if who else None
    assert caller is not None, "a 200 without a valid token"
    principal = auth.principal(caller, user, groups)
    for hit in hits:
        meta = hit["metadata"]
        assert may_read(principal, meta["acl"], meta["acl_deny"]), (principal, meta["path"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    q=odd_text,
    k=st.integers(-5, 500) | header_text,
    mode=st.sampled_from(["hybrid", "dense", "sparse"]) | header_text,
    user=st.none() | odd_text,
    groups=st.lists(odd_text, max_size=4),
    token=st.sampled_from([*TOKENS, None]) | header_text,
    context=st.integers(-2, 9),
)
def test_search_never_fails_and_never_leaks(
    client: tuple[TestClient, Authenticator], q: str, k: Any, mode: str, user: Any,
    groups: list[str], token: str | None, context: int,
) -> None:  # fmt: skip
    http, auth = client
    params: list[tuple[str, Any]] = [("q", q), ("k", k), ("mode", mode), ("context", context)]
    params += [("group", g) for g in groups]
    if user is not None:
        params.append(("user", user))
    who = token if token in TOKENS else None
    headers = {"Authorization": f"Bearer {TOKENS[who]}" if who else f"Bearer {token or ''}"}
    r = http.get("/search", params=params, headers=headers)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json().get("detail"), r.text  # a reason
    else:
        _readable(auth, who, user, groups, r.json())


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=odd_text, index=st.integers(-3, 10**6), who=st.sampled_from([*TOKENS]),
       user=st.none() | st.sampled_from(["root", "alice", "nobody"]))  # fmt: skip
def test_documents_never_fail_and_never_leak(
    client: tuple[TestClient, Authenticator], runtime: Runtime, doc: str, index: int, who: str,
    user: str | None,
) -> None:  # fmt: skip
    http, auth = client
    ids = [r.id for r in runtime.catalog.documents("f").values()]
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    params = {"user": user} if user else {}
    for doc_id in (quote(doc, safe=""), *ids):  # odd ids arrive percent-encoded
        for path in (f"/documents/{doc_id}", f"/documents/{doc_id}/chunks/{index}/neighbours"):
            r = http.get(path, params=params, headers=headers)
            assert r.status_code < 500, r.text
            if r.status_code == 200:
                _readable(auth, who, user, [], r.json())


def test_request_size_and_rate_limits(runtime: Runtime) -> None:
    http, _ = _app(runtime, Limits(max_request_bytes=2048, rate_per_s=5))
    headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
    big = http.get("/search", params={"q": "x" * 3000}, headers=headers)
    assert big.status_code == 413 and "2048" in big.json()["detail"]
    replies = [http.get("/search", params={"q": "pump"}, headers=headers) for _ in range(40)]
    assert replies[0].status_code == 200  # a burst of 10, then 5 per second
    limited = [r for r in replies if r.status_code == 429]
    assert limited and limited[0].headers["Retry-After"] == "1"
    assert "5 per second" in limited[0].json()["detail"]
    other = {"Authorization": f"Bearer {TOKENS['service']}"}  # per caller
    assert http.get("/search", params={"q": "pump"}, headers=other).status_code == 200
