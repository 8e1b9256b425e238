"""Windows' whole verdict against the real Samba AD DC (tests/samba.py), no mock of SMB, RPC or
LDAP: a share's own permissions (read over SRVSVC, or from the configuration) AND each file's
NTFS ACL, compared with the server's own tree connect and open as each user; a change of the
share's permissions reaching the index without re-embedding; the service account that may not
read them; accounts the directory marks disabled, locked out or expired."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_cli
from tests.samba import NO_RPC_ACCOUNT, USER_PASSWORD, SambaDC

pytestmark = pytest.mark.integration

USERS = [f"wv{i}" for i in range(5)]
GROUPS = ["WvHR", "WvEng", "WvOps"]


@dataclass
class Share:
    dc: SambaDC
    name: str  # one of the DC's extra shares (tests/samba.py), and the ShareIndex share's name
    data: Path
    files: list[str]

    @property
    def url(self) -> str:
        return f"smb://{self.dc.ip}/{self.name}"

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.dc.env(), "SHAREINDEX_DIRECTORY_CACHE_S": "0", **extra}

    def cli(self, *args: str, **extra: str) -> Any:
        return run_cli(*args, "--data-dir", str(self.data), env=self.env(**extra))

    def sync(self, **extra: str) -> dict[str, Any]:
        proc = self.cli("sync", "--share", f"{self.name}={self.url}", "--json", **extra)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def found(self, user: str, query: str = "verdict test file", **extra: str) -> set[str]:
        proc = self.cli("search", query, "--user", user, "--k", "50", "--json", **extra)
        assert proc.returncode == 0, proc.stderr
        return {h["metadata"]["path"] for h in json.loads(proc.stdout)
                if h["metadata"]["share"] == self.name}  # fmt: skip


@pytest.fixture(scope="module")
def share(dc: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Share:
    for user in USERS:
        dc.user(user)
    for group in GROUPS:
        dc.group(group)
    name = dc.take_share()
    files = []
    for n in range(6):
        rel = f"f{n}.txt"
        dc.put_on(name, rel, f"Verdict test file number {n} about the kingfisher ledger.\n")
        files.append(rel)
    return Share(dc, name, tmp_path_factory.mktemp("verdict") / "data", files)


def _random_round(share: Share, rng: random.Random) -> None:
    """Random memberships, random NTFS ACLs on every file, random share permissions."""
    dc, d = share.dc, share.dc.domain
    for group in GROUPS:
        members = [u for u in USERS if rng.random() < 0.5]
        current = dc.tool("group", "listmembers", group).split()
        gone = [u for u in current if u not in members]
        if gone:
            dc.tool("group", "removemembers", group, ",".join(gone))
        new = [u for u in members if u not in current]
        if new:
            dc.add_members(group, *new)
    principals = [*USERS, *GROUPS, "Domain Users"]
    for rel in share.files:
        aces = []
        for _ in range(rng.randint(1, 3)):
            kind = "DENIED" if rng.random() < 0.3 else "ALLOWED"
            who = rng.choice(principals if kind == "ALLOWED" else principals[:-1])
            aces.append((kind, who))
        aces.sort(key=lambda a: a[0] != "DENIED")  # Windows' order: denies first
        dc.acl_on(share.name, rel, *[f"{d}\\{who}:{kind}/0x0/READ" for kind, who in aces],
                  f"{d}\\svc:ALLOWED/0x0/READ")  # fmt: skip
    share_aces = []
    for _ in range(rng.randint(1, 3)):
        kind = "DENIED" if rng.random() < 0.3 else "ALLOWED"
        who = rng.choice([*USERS, *GROUPS] if kind == "DENIED" else [*USERS, *GROUPS, "S-1-1-0"])
        rights = rng.choice(["READ", "FULL", "CHANGE"] if kind == "ALLOWED" else
                            ["READ", "FULL", "0x00000002"])  # a deny of writing only  # fmt: skip
        share_aces.append((kind, who, rights))
    share_aces.sort(key=lambda a: a[0] != "DENIED")
    # the service account keeps its way in (a deny of one of its groups is not drawn)
    dc.share_acl(share.name, *share_aces, ("ALLOWED", "svc", "READ"))


def test_share_and_ntfs_permissions_decide_together_as_the_server_does(share: Share) -> None:
    """Three rounds of random share permissions, NTFS ACLs and memberships: for every user, the
    files `search --user` finds are exactly those the DC lets the user open over the share; a
    round after the first changes only permissions, and embeds nothing."""
    rng = random.Random(20261207)
    compared = 0
    for round_ in range(3):
        _random_round(share, rng)
        report = share.sync()
        assert not report["share_warnings"], report["share_warnings"]
        if round_:
            assert report["chunks"]["embedded"] == 0, report
        for user in USERS:
            server = {rel for rel in share.files if share.dc.can_read(user, rel, share.name)}
            assert share.found(user) == server, (round_, user)
            compared += len(share.files)
    assert compared == 3 * len(USERS) * len(share.files)


def test_a_share_permission_change_is_a_payload_update_and_explained(share: Share) -> None:
    """NTFS lets every domain user read; the share admits only WvHR. A non-member is refused by
    the share layer (explain says so), then the share is opened to Domain Users: 0 chunks
    embedded, and the non-member finds the file."""
    dc, d = share.dc, share.dc.domain
    dc.tool("group", "addmembers", "WvHR", USERS[0])
    with contextlib.suppress(RuntimeError):
        dc.tool("group", "removemembers", "WvHR", USERS[1])
    for rel in share.files:
        dc.acl_on(share.name, rel, f"{d}\\Domain Users:ALLOWED/0x0/READ", f"{d}\\svc:ALLOWED/0x0/READ")
    dc.share_acl(share.name, ("ALLOWED", "WvHR", "READ"), ("ALLOWED", "svc", "READ"))
    share.sync()
    assert share.found(USERS[0]) == set(share.files)
    assert share.found(USERS[1]) == set() == {r for r in share.files
                                              if dc.can_read(USERS[1], r, share.name)}  # fmt: skip
    proc = share.cli("acl", "explain", f"{share.name}:f0.txt", "--user", USERS[1], "--json",
                     "--share", f"{share.name}={share.url}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["decided_by"] == "share" and report["ntfs_allows"] is True
    assert report["share_permissions"]["origin"] == "server"
    assert not report["windows_allows"] and not report["index_allows"]
    proc = share.cli("acl", "explain", f"{share.name}:f0.txt", "--user", USERS[0],
                     "--share", f"{share.name}={share.url}")  # fmt: skip
    assert "share permissions (from the server), in order:" in proc.stdout
    assert "decided by ntfs" in proc.stdout and "verdict: CAN read" in proc.stdout

    dc.share_acl(share.name, ("ALLOWED", "Domain Users", "READ"))
    report = share.sync()
    assert report["chunks"]["embedded"] == 0 and report["documents"]["changed"] == 0, report
    assert share.found(USERS[1]) == set(share.files)
    proc = share.cli("verify", "--share", f"{share.name}={share.url}", "--json")
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_a_service_account_that_may_not_read_the_share_permissions(share: Share) -> None:
    """The server refuses the account its SRVSVC pipe: by default nothing of the share is
    searchable, with a warning (sync, status, explain) naming the right to grant;
    share_permissions_missing = ntfs lets NTFS alone decide; share_permissions (SDDL) gives the
    share's permissions, and they decide. Each switch is a payload update."""
    dc, d = share.dc, share.dc.domain
    dc.user(NO_RPC_ACCOUNT)
    dc.acl_on(share.name, "/", f"{d}\\Administrator:ALLOWED/OI|CI/FULL",
              f"{d}\\{NO_RPC_ACCOUNT}:ALLOWED/OI|CI/READ", f"{d}\\svc:ALLOWED/OI|CI/READ",
              f"{d}\\Domain Users:ALLOWED/0x0/0x00100020")  # fmt: skip
    for rel in share.files:
        dc.acl_on(share.name, rel, f"{d}\\Domain Users:ALLOWED/0x0/READ",
                  f"{d}\\{NO_RPC_ACCOUNT}:ALLOWED/0x0/READ")  # fmt: skip
    account = {"SHAREINDEX_SMB_USERNAME": f"{d}\\{NO_RPC_ACCOUNT}",
               "SHAREINDEX_SMB_PASSWORD": USER_PASSWORD}  # fmt: skip
    report = share.sync(**account)
    warning = report["share_warnings"][share.name]
    assert "Power Users" in warning and f"share_permissions.{share.name}" in warning
    assert "nothing of share" in warning
    assert share.found(USERS[0], **account) == set()
    proc = share.cli("status", "--json", **account)
    assert share.name in json.loads(proc.stdout)["share_warnings"]
    proc = share.cli("acl", "explain", f"{share.name}:f0.txt", "--user", USERS[0], "--share",
                     f"{share.name}={share.url}", **account)  # fmt: skip
    assert "share permissions: unknown:" in proc.stdout and "cannot read" in proc.stdout

    report = share.sync(SHAREINDEX_SHARE_PERMISSIONS_MISSING="ntfs", **account)
    assert "NTFS permissions alone decide" in report["share_warnings"][share.name]
    assert report["chunks"]["embedded"] == 0
    assert share.found(USERS[0], SHAREINDEX_SHARE_PERMISSIONS_MISSING="ntfs",
                       **account) == set(share.files)  # fmt: skip

    hr = dc.sid("WvHR")
    sddl = json.dumps({share.name: f"D:(A;;0x1200a9;;;{hr})"})
    report = share.sync(SHAREINDEX_SHARE_PERMISSIONS=sddl, **account)
    assert not report["share_warnings"] and report["chunks"]["embedded"] == 0, report
    members = set(dc.tool("group", "listmembers", "WvHR").split())
    for user in USERS[:3]:
        expected = set(share.files) if user in members else set()
        assert share.found(user, SHAREINDEX_SHARE_PERMISSIONS=sddl, **account) == expected, user
    proc = share.cli("acl", "explain", f"{share.name}:f0.txt", "--user", USERS[0], "--json",
                     "--share", f"{share.name}={share.url}", SHAREINDEX_SHARE_PERMISSIONS=sddl,
                     **account)  # fmt: skip
    assert json.loads(proc.stdout)["share_permissions"]["origin"] == "config"


def test_the_front_ends_paths_answer_each_domain_user_as_the_server_decides(
    share: Share, tmp_path: Path
) -> None:
    """Issue 28 over NTFS/AD principals: random share permissions, ACLs and memberships; for
    every user, signed in at a test identity provider (their UPN), the MCP tool's hits equal
    ``GET /search``'s for that user, so do Open WebUI's forwarded JWT's and Dify's (a token bound
    to the user), and the files found are those the DC lets the user open."""
    import asyncio
    import urllib.parse

    from index.permissions.callers import new_token
    from tests.helpers import free_port, running_service
    from tests.idp import IdentityProvider, bearer, mcp_call, openwebui_user_jwt, same
    from workers.settings import load_settings

    dc = share.dc
    _random_round(share, random.Random(28))
    share.sync()
    idp = IdentityProvider()
    secret = "open-webui-secret-for-the-verdict-test"
    svc, svc_digest = new_token()
    dify, dify_digest = new_token()
    settings = load_settings(
        data_dir=tmp_path / "data", shares={share.name: share.url}, api_port=free_port(),
        **dc.service_settings(), directory_cache_s=0, reconcile_interval_s=3600,
        oidc_issuer=idp.issuer, oidc_audience=idp.audience, openwebui_jwt_secret=secret,
        api_tokens=[{"name": "svc", "sha256": svc_digest, "on_behalf": True},
                    {"name": "dify", "sha256": dify_digest, "user": USERS[0]}],
    )  # fmt: skip
    query = "verdict test file kingfisher"
    try:
        with running_service(settings, timeout=300) as running:
            url = running.service.url

            def api(headers: dict[str, str], **params: Any) -> list[tuple[str, int, float]]:
                answer = httpx.get(f"{url}/search?" + urllib.parse.urlencode(
                    {"q": query, "k": 20, **params}), headers=headers, timeout=60)  # fmt: skip
                assert answer.status_code == 200, answer.text
                return [(h["metadata"]["path"], h["metadata"]["chunk_index"], h["score"])
                        for h in answer.json()]  # fmt: skip

            for user in USERS:
                expected = api(bearer(svc), user=user)
                server = {rel for rel in share.files if dc.can_read(user, rel, share.name)}
                assert {path for path, _, _ in expected} == server, user
                token = idp.token({"upn": f"{user}@{dc.realm}"})
                result = asyncio.run(mcp_call(f"{url}/mcp", bearer(token), "search",
                                              {"query": query, "k": 20}))  # fmt: skip
                assert not result.is_error, result.content
                assert same([(r["path"], r["chunk"], r["score"])
                             for r in result.structured_content["results"]], expected), user  # fmt: skip
                assert same(api(bearer(token)), expected), user
                forwarded = {**bearer(svc), "X-OpenWebUI-User-Jwt":
                             openwebui_user_jwt(secret, f"{user}@{dc.realm}", user)}  # fmt: skip
                assert same(api(forwarded), expected), user
                for hit in result.structured_content["results"]:
                    assert hit["source"] == f"\\\\{dc.ip}\\{share.name}\\{hit['path']}"
            answer = httpx.post(f"{url}/retrieval", headers=bearer(dify), timeout=60, json={
                "knowledge_id": share.name, "query": query,
                "retrieval_setting": {"top_k": 20, "score_threshold": 0.0}})  # fmt: skip
            assert answer.status_code == 200, answer.text
            assert same([(r["metadata"]["path"], r["metadata"]["chunk"], r["score"])
                         for r in answer.json()["records"]],
                        api(bearer(svc), user=USERS[0], mode="dense"))  # fmt: skip
    finally:
        idp.close()


@pytest.fixture(scope="module")
def accounts(share: Share) -> Iterator[list[str]]:
    """Three users who read the share's files, put back as they were afterwards."""
    names = ["wvdis", "wvlock", "wvexp"]
    for name in names:
        share.dc.user(name)
    share.dc.share_acl(share.name, ("ALLOWED", "Domain Users", "READ"))
    d = share.dc.domain
    for rel in share.files:
        share.dc.acl_on(share.name, rel, f"{d}\\Domain Users:ALLOWED/0x0/READ",
                        f"{d}\\svc:ALLOWED/0x0/READ")  # fmt: skip
    share.sync()
    yield names


def test_disabled_locked_out_and_expired_accounts_read_nothing(
    share: Share, accounts: list[str], tmp_path: Path
) -> None:
    """Each state of the account (userAccountControl, lockout, accountExpires) as the directory
    sets it: the server refuses the logon, `search --user` gives one error line, the query API a
    403 with the reason, `acl explain` says why; enabled again, the user reads again."""
    from index.permissions.callers import new_token
    from tests.helpers import free_port, running_service
    from workers.settings import load_settings

    dc = share.dc
    for user in accounts:
        assert share.found(user) == set(share.files), user
    dc.disable("wvdis")
    dc.lock_out("wvlock")
    dc.expire("wvexp")
    states = {"wvdis": "is disabled", "wvlock": "is locked out", "wvexp": "is expired"}
    for user, said in states.items():
        assert not dc.can_read(user, "f0.txt", share.name), user  # the server refuses the logon
        proc = share.cli("search", "kingfisher ledger", "--user", user)
        assert proc.returncode == 1 and said in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
        proc = share.cli("acl", "explain", f"{share.name}:f0.txt", "--user", user, "--json",
                         "--share", f"{share.name}={share.url}")  # fmt: skip
        report = json.loads(proc.stdout)
        assert report["decided_by"] == "account" and said in report["account"]
        assert not report["index_allows"]

    from tests.idp import IdentityProvider, bearer

    token, digest = new_token()
    dify, dify_digest = new_token()
    idp = IdentityProvider()
    settings = load_settings(
        data_dir=tmp_path / "data", shares={share.name: share.url}, api_port=free_port(),
        **dc.service_settings(), directory_cache_s=0, reconcile_interval_s=3600,
        oidc_issuer=idp.issuer, oidc_audience=idp.audience,
        api_tokens=[{"name": "frontend", "sha256": digest, "on_behalf": True},
                    {"name": "dify", "sha256": dify_digest, "user": "wvdis"}],
    )  # fmt: skip
    with running_service(settings, timeout=120) as running:
        url, auth = running.service.url, {"Authorization": f"Bearer {token}"}

        def api(user: str) -> httpx.Response:
            return httpx.get(f"{url}/search", params={"q": "kingfisher ledger", "user": user},
                             headers=auth, timeout=30)  # fmt: skip

        for user, said in states.items():
            answer = api(user)
            assert answer.status_code == 403 and said in answer.json()["detail"], answer.text
            signed = bearer(idp.token({"upn": f"{user}@{dc.realm}"}))  # signed in, but inactive
            for answer in (httpx.get(f"{url}/search", params={"q": "kingfisher"}, headers=signed),
                           httpx.post(f"{url}/mcp", headers=signed, json={})):  # fmt: skip
                assert answer.status_code == 403 and said in answer.json()["detail"], answer.text
        answer = httpx.post(f"{url}/retrieval", headers=bearer(dify), json={
            "knowledge_id": "*", "query": "kingfisher",
            "retrieval_setting": {"top_k": 3, "score_threshold": 0}})  # fmt: skip
        assert answer.status_code == 403 and answer.json()["error_code"] == 1002, answer.text
        assert api(USERS[0]).status_code == 200
        dc.enable("wvdis")  # the cache is 0 s here: the change applies at the next request
        hits = api("wvdis").json()
        assert {h["metadata"]["path"] for h in hits} >= {"f0.txt"}
        signed = bearer(idp.token({"upn": f"wvdis@{dc.realm}"}))
        answer = httpx.get(f"{url}/search", params={"q": "kingfisher ledger"}, headers=signed)
        assert {h["metadata"]["path"] for h in answer.json()} >= {"f0.txt"}
    idp.close()
