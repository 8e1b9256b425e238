"""Windows file servers end to end, against a real Samba Active Directory domain controller on a
loopback address of its own (tests/samba.py): a share read over SMB, permissions from the NTFS
security descriptors, users and nested groups from the directory. No mock of SMB or LDAP."""

from __future__ import annotations

import contextlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from index.permissions.readers import Principal, may_read
from tests.conftest import run_cli
from tests.samba import SambaDC

pytestmark = pytest.mark.integration


@dataclass
class Indexed:
    dc: SambaDC
    data: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.dc.env(), "SHAREINDEX_DIRECTORY_CACHE_S": "0", **extra}

    def sync(self) -> dict[str, Any]:
        proc = run_cli("sync", "--share", f"corp={self.dc.url}", "--data-dir", str(self.data),
                       "--json", env=self.env())  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def hits(self, user: str, query: str) -> list[dict[str, Any]]:
        proc = run_cli("search", query, "--user", user, "--k", "20", "--json",
                       "--data-dir", str(self.data), env=self.env())  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def found(self, user: str, query: str) -> set[str]:
        return {h["metadata"]["path"] for h in self.hits(user, query)}


@pytest.fixture(scope="module")
def indexed(dc: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    d = dc.domain
    for user in ("alice", "bob", "carol"):
        dc.user(user)
    dc.group("HR", "alice")
    dc.group("Staff", "HR", "bob")  # alice is in Staff through HR
    dc.mkdir("hr")
    # inheritable ACEs on the folder reach the files written after them
    dc.acl("hr", f"{d}\\HR:ALLOWED/OI|CI/READ", f"{d}\\svc:ALLOWED/OI|CI/READ",
           f"{d}\\Administrator:ALLOWED/OI|CI/FULL")  # fmt: skip
    dc.put("hr/plan.txt", "The walrus reorganisation plan moves payroll to the second floor.\n")
    dc.put("staff.txt", "The staff canteen serves the otter soup on Fridays.\n")
    dc.acl("staff.txt", f"{d}\\Staff:ALLOWED/0x0/READ", f"{d}\\svc:ALLOWED/0x0/READ")
    dc.put("deny.txt", "The heron audit findings are not for alice.\n")
    dc.acl("deny.txt", f"{d}\\alice:DENIED/0x0/READ", f"{d}\\Staff:ALLOWED/0x0/READ",
           f"{d}\\svc:ALLOWED/0x0/READ")  # fmt: skip
    dc.put("bob.txt", "Bob's notes on the lynx forklift lease.\n")
    dc.acl("bob.txt", f"{d}\\bob:ALLOWED/0x0/READ", f"{d}\\svc:ALLOWED/0x0/READ")
    result = Indexed(dc, tmp_path_factory.mktemp("smb") / "data")
    report = result.sync()
    assert report["documents"]["new"] == 4, report
    return result


def test_nested_groups_inherited_aces_and_a_deny_that_beats_an_allow(indexed: Indexed) -> None:
    assert indexed.found("alice", "walrus reorganisation payroll") >= {"hr/plan.txt"}
    assert "hr/plan.txt" not in indexed.found("bob", "walrus reorganisation payroll")
    assert "staff.txt" in indexed.found("alice", "otter soup canteen")  # Staff through HR
    assert "staff.txt" in indexed.found("bob", "otter soup canteen")
    assert "deny.txt" not in indexed.found("alice", "heron audit findings")  # denied by name
    assert "deny.txt" in indexed.found("bob", "heron audit findings")
    assert "bob.txt" in indexed.found("bob", "lynx forklift lease")  # one user only
    assert "bob.txt" not in indexed.found("alice", "lynx forklift lease")
    assert "bob.txt" not in indexed.found("carol", "lynx forklift lease")


def test_acl_explain_names_the_sids_and_the_deciding_ace(indexed: Indexed) -> None:
    share = ("--share", f"corp={indexed.dc.url}", "--data-dir", str(indexed.data))
    proc = run_cli("acl", "explain", "corp:deny.txt", "--user", "alice", "--json", *share,
                   env=indexed.env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    names = {s["name"] for s in report["user_sids"]}
    assert {"alice", "HR", "Staff", "Everyone"} <= names  # Staff only through HR
    first = report["dacl"][0]
    assert (first["type"], first["name"], first["decided"]) == ("deny", "alice", True)
    assert not report["windows_allows"] and not report["index_allows"]
    assert report["verdict"] == "cannot read: NTFS: ACE 1 decided (deny alice)"
    assert report["decided_by"] == "ntfs" and report["share_permissions"]["allows"]
    # bob holds Staff, the third ACE; given as the file's URL, in text form
    proc = run_cli("acl", "explain", f"{indexed.dc.url}/deny.txt", "--user", "bob", *share,
                   env=indexed.env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "=>  3 allow Staff" in proc.stdout
    assert ("verdict: CAN read: share permissions: ACE 1 decided (allow Everyone); NTFS: ACE 3 "
            "decided (allow Staff)") in proc.stdout
    proc = run_cli("acl", "explain", "corp:deny.txt", "--user", "bob", "--group", "x", *share,
                   env=indexed.env())  # fmt: skip
    assert proc.returncode == 1 and "groups are read from the directory" in proc.stderr


def test_an_unknown_user_is_refused_never_searched_as_anyone(indexed: Indexed) -> None:
    proc = run_cli("search", "otter soup", "--user", "mallory", "--data-dir", str(indexed.data),
                   env=indexed.env())  # fmt: skip
    assert proc.returncode == 1
    assert "no user 'mallory' in the directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_acl_change_on_the_server_is_a_payload_update(indexed: Indexed) -> None:
    d = indexed.dc.domain
    indexed.dc.acl("bob.txt", f"{d}\\bob:ALLOWED/0x0/READ", f"{d}\\alice:ALLOWED/0x0/READ",
                   f"{d}\\svc:ALLOWED/0x0/READ")  # fmt: skip
    report = indexed.sync()
    assert report["chunks"]["embedded"] == 0 and report["documents"]["changed"] == 0, report
    assert "bob.txt" in indexed.found("alice", "lynx forklift lease")


def test_a_group_change_in_the_directory_applies_without_a_sync(indexed: Indexed) -> None:
    assert "hr/plan.txt" not in indexed.found("carol", "walrus reorganisation payroll")
    indexed.dc.add_members("HR", "carol")
    assert "hr/plan.txt" in indexed.found("carol", "walrus reorganisation payroll")


def test_the_index_decides_as_the_domain_controller(indexed: Indexed) -> None:
    """Random ACLs on files, random memberships: for every user and file, the index lets the
    user read exactly when the DC itself lets them open the file."""
    dc, d = indexed.dc, indexed.dc.domain
    rng = random.Random(20261129)
    users = [f"pu{i}" for i in range(4)]
    groups = [f"PG{i}" for i in range(3)]
    for user in users:
        dc.user(user)
    for group in groups:
        dc.group(group, *[u for u in users if rng.random() < 0.5])
    principals = [*users, *groups, "Domain Users"]
    files = []
    for n in range(8):
        rel = f"prop{n}.txt"
        dc.put(rel, f"Property test file {n}.\n")
        aces = []
        for _ in range(rng.randint(1, 3)):  # Windows' order: denies before allows
            kind = "DENIED" if rng.random() < 0.3 else "ALLOWED"
            # a deny of Domain Users would shut out the service account too (the file is then
            # failed, "access denied to the service account": its own test below)
            who = rng.choice(principals if kind == "ALLOWED" else principals[:-1])
            aces.append((kind, who))
        aces.sort(key=lambda a: a[0] != "DENIED")
        dc.acl(rel, *[f"{d}\\{who}:{kind}/0x0/READ" for kind, who in aces],
               f"{d}\\svc:ALLOWED/0x0/READ")  # fmt: skip
        files.append(rel)
    indexed.sync()
    directory = dc.directory()
    catalog = _acls(indexed.data)
    compared = 0
    for user in users:
        principal = Principal(user, sids=directory.sids_of(user))
        for rel in files:
            allow, deny = catalog[rel]
            assert may_read(principal, allow, deny) == dc.can_read(user, rel), (user, rel)
            compared += 1
    assert compared == len(users) * len(files)


def _acls(data: Path) -> dict[str, tuple[list[str], list[str]]]:
    import sqlite3

    with sqlite3.connect(f"file:{data / 'catalog.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT path, acl, acl_deny FROM documents").fetchall()
    return {path: (json.loads(acl), json.loads(deny)) for path, acl, deny in rows}


def test_a_file_the_service_account_may_not_read_fails_with_its_reason(indexed: Indexed) -> None:
    d = indexed.dc.domain
    indexed.dc.put("locked-out.txt", "The service account is denied this file.\n")
    indexed.dc.acl("locked-out.txt", f"{d}\\Domain Users:DENIED/0x0/READ",
                   f"{d}\\Administrator:ALLOWED/0x0/FULL")  # fmt: skip
    proc = run_cli("sync", "--share", f"corp={indexed.dc.url}", "--data-dir", str(indexed.data),
                   "--json", env=indexed.env())  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    [failure] = json.loads(proc.stdout)["failures"]
    assert failure["path"] == "locked-out.txt"
    assert "access denied to the service account" in failure["reason"]


def test_the_running_service_follows_the_share_through_change_notifications(
    dc: SambaDC, tmp_path: Path
) -> None:
    """`run` on an SMB share: the server's change notifications (the reconcile is an hour away)
    bring a new file, an ACL change (a payload update), a rename, a new folder and a delete; after
    the server dropped every connection, the watch comes back and nothing is missed."""
    from index.search import Searcher
    from tests.helpers import free_port, running_service, wait_until
    from workers.settings import load_settings

    d = dc.domain
    for user in ("alice", "bob"):
        dc.user(user)
    dc.group("Live", "alice")
    dc.mkdir("live")
    dc.acl("live", f"{d}\\Live:ALLOWED/OI|CI/READ", f"{d}\\svc:ALLOWED/OI|CI/READ",
           f"{d}\\Administrator:ALLOWED/OI|CI/FULL")  # fmt: skip
    settings = load_settings(
        data_dir=tmp_path / "data", shares={"live": f"{dc.url}/live"}, api_port=free_port(),
        **dc.service_settings(), directory_cache_s=0, debounce_s=0.2, reconcile_interval_s=3600,
    )  # fmt: skip
    pelican = "The pelican budget closes on the third of March."
    directory = dc.directory()
    with running_service(settings, timeout=120) as running, contextlib.closing(directory):
        runtime = running.runtime
        searcher = Searcher(runtime.store, runtime.embedder)

        def found(user: str, text: str) -> list[str]:
            principal = Principal(user, sids=directory.sids_of(user))
            return [h.metadata["path"] for h in searcher.search(text, principal, k=5)
                    if h.page_content.strip() == text]  # fmt: skip

        def found_words(user: str, query: str) -> list[str]:
            principal = Principal(user, sids=directory.sids_of(user))
            return [h.metadata["path"] for h in searcher.search(query, principal, k=5)
                    if all(w in h.page_content.lower() for w in query.split())]  # fmt: skip

        dc.put("live/pelican.txt", pelican + "\n")
        wait_until(lambda: found("alice", pelican) == ["pelican.txt"], 120, "the new file")
        assert found("bob", pelican) == []
        # the query API resolves each spelling of a user through the directory, and refuses a
        # user the directory does not have (never anonymous, never someone else's results)
        for spelling in ("alice", f"{d}\\alice", f"alice@{dc.realm}"):
            r = api(settings.api_port, tmp_path / "data", pelican, spelling)
            assert r.status_code == 200, r.text
            assert "pelican.txt" in [h["metadata"]["path"] for h in r.json()], spelling
        r = api(settings.api_port, tmp_path / "data", pelican, "mallory")
        assert r.status_code == 403 and "mallory" in r.json()["detail"], r.text
        version = runtime.catalog.find("live", "pelican.txt").version  # type: ignore[union-attr]
        dc.acl("live/pelican.txt", f"{d}\\bob:ALLOWED/0x0/READ", f"{d}\\svc:ALLOWED/0x0/READ")
        wait_until(lambda: found("bob", pelican) == ["pelican.txt"], 120, "the ACL change")
        assert found("alice", pelican) == []
        record = runtime.catalog.find("live", "pelican.txt")
        assert record is not None and record.version == version  # permissions only: no new version
        dc.smbclient('rename "live/pelican.txt" "live/pelican-2027.txt"')
        wait_until(lambda: found("bob", pelican) == ["pelican-2027.txt"], 120, "the rename")
        dc.mkdir("live/minutes")
        osprey = "The osprey committee meets in the library."
        dc.put("live/minutes/osprey.txt", osprey + "\n")
        wait_until(lambda: found("alice", osprey) == ["minutes/osprey.txt"], 120, "a new folder")
        # an edit: a new version
        budget = "The budget review adds a line for the new boathouse roof."
        dc.put("live/pelican-2027.txt", f"{pelican}\n\n{budget}\n")
        wait_until(lambda: found_words("bob", "boathouse roof") == ["pelican-2027.txt"], 120,
                   "the edit")  # fmt: skip
        # the new version's points are searchable before the catalog records the version done
        wait_until(lambda: (r := runtime.catalog.find("live", "pelican-2027.txt")) is not None
                   and r.version == version + 1, 60, "the new version")  # fmt: skip
        # a scanned page: read over SMB by the parse process, OCR'd
        from tests.scans import page_scan, scanned_pdf

        dc.put("live/minutes/scan.pdf", scanned_pdf([page_scan(["Inspection of the weir gate",
                                                                 "The weir gate hinge is cracked."])]))  # fmt: skip
        wait_until(lambda: "minutes/scan.pdf" in found_words("alice", "weir gate hinge cracked"),
                   180, "the scanned page")  # fmt: skip
        # inheritance broken on a folder and new permissions propagated to its files (as
        # Explorer does): payload updates only
        osprey_version = runtime.catalog.find("live", "minutes/osprey.txt").version  # type: ignore[union-attr]
        dc.break_inheritance("live/minutes")
        dc.acl("live/minutes", f"{d}\\bob:ALLOWED/OI|CI/READ", f"{d}\\svc:ALLOWED/OI|CI/READ",
               f"{d}\\Administrator:ALLOWED/OI|CI/FULL", propagate=True)  # fmt: skip
        wait_until(lambda: found("bob", osprey) == ["minutes/osprey.txt"], 120, "the folder's ACL")
        # alice's ACE stays on the file: smbcacls turned the inherited ACEs explicit there
        assert found("alice", osprey) == ["minutes/osprey.txt"]
        assert runtime.catalog.find("live", "minutes/osprey.txt").version == osprey_version  # type: ignore[union-attr]
        dc.smbclient('del "live/pelican-2027.txt"')
        wait_until(lambda: found_words("bob", "boathouse roof") == [], 120, "the delete")
        # the server drops every client connection; a file written meanwhile is still found
        dropped = dc.drop_connections()
        assert dropped, "no client connection to drop"
        heron = "The heron survey counts nests along the canal."
        dc.put("live/heron.txt", heron + "\n")
        wait_until(lambda: found("alice", heron) == ["heron.txt"], 180, "after the drop")
        assert not [line for line in running.said if "failed" in line], running.said


def _sync(indexed: Indexed, url: str, **env: str) -> tuple[int, str, str]:
    proc = run_cli("sync", "--share", f"corp={url}", "--data-dir", str(indexed.data), "--json",
                   env=indexed.env(**env))  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def test_a_share_that_cannot_be_reached_stops_the_pass_and_loses_nothing(indexed: Indexed) -> None:
    """Wrong password, a server that does not answer, a share the server does not have: one
    clear line each, exit 1, and the share's documents stay indexed and searchable."""
    dc = indexed.dc
    before = indexed.found("bob", "lynx forklift lease")
    assert "bob.txt" in before
    cases = [
        (dc.url, {"SHAREINDEX_SMB_PASSWORD": "not-the-password"}, "cannot log in to"),
        (f"smb://{dc.ip}:1/corp", {}, "cannot log in to"),  # nothing listens on port 1
        (f"smb://{dc.ip}/no-such-share", {}, "the share does not exist on the server"),
    ]
    for url, env, message in cases:
        code, _, stderr = _sync(indexed, url, **env)
        assert code == 1, (url, stderr)
        assert message in stderr, (url, stderr)
        assert "Traceback" not in stderr
    assert indexed.found("bob", "lynx forklift lease") == before  # the share layer kept too
    assert indexed.sync()["documents"]["deleted"] == 0


def test_a_server_can_have_an_account_of_its_own(indexed: Indexed, tmp_path: Path) -> None:
    """[smb_hosts."HOST"] in the TOML file wins over SHAREINDEX_SMB_USERNAME/PASSWORD."""
    dc = indexed.dc
    config = tmp_path / "shareindex.toml"
    config.write_text(f'[smb_hosts."{dc.ip}"]\nusername = "{dc.domain}\\\\svc"\n'
                      f'password = "{dc.env()["SHAREINDEX_SMB_PASSWORD"]}"\n')  # fmt: skip
    wrong = {"SHAREINDEX_SMB_USERNAME": "CORP\\nobody", "SHAREINDEX_SMB_PASSWORD": "wrong"}
    code, _, stderr = _sync(indexed, dc.url, **wrong)
    assert code == 1 and "cannot log in to" in stderr, stderr
    code, stdout, stderr = _sync(indexed, dc.url, SHAREINDEX_CONFIG=str(config), **wrong)
    assert code in (0, 3), stderr
    assert json.loads(stdout)["documents"]["deleted"] == 0


def test_a_file_locked_by_another_client_waits_and_is_indexed_once_released(
    indexed: Indexed,
) -> None:
    dc, d = indexed.dc, indexed.dc.domain
    dc.put("locked.txt", "The kestrel inventory is held open by the scanner.\n")
    dc.acl("locked.txt", f"{d}\\Staff:ALLOWED/0x0/READ", f"{d}\\svc:ALLOWED/0x0/READ",
           f"{d}\\Administrator:ALLOWED/0x0/FULL")  # fmt: skip
    with dc.hold_open("locked.txt"):  # another client: no sharing of reads
        code, stdout, stderr = _sync(indexed, dc.url)
        assert code == 3, stderr
        [failure] = json.loads(stdout)["failures"]
        assert (failure["path"], failure["status"]) == ("locked.txt", "pending"), failure
        assert "locked by another client" in failure["reason"]
        status = json.loads(run_cli("status", "--data-dir", str(indexed.data), "--json",
                                    env=indexed.env()).stdout)  # fmt: skip
        assert status["documents"]["pending"] >= 1, status
    report = indexed.sync()
    assert report["documents"]["new"] == 1 and report["failures"] == [], report
    assert "locked.txt" in indexed.found("bob", "kestrel inventory scanner")


def test_a_name_windows_forbids_is_read_under_the_name_the_server_gives(indexed: Indexed) -> None:
    """A file made on the server's own disk with characters SMB forbids (``:`` ``?`` ``*``):
    the server lists it under a mangled 8.3 name; it is indexed under that name, and the rest of
    the share goes on."""
    dc, d = indexed.dc, indexed.dc.domain
    dc.put("forbidden-neighbour.txt", "The bittern ledger sits beside the odd name.\n")
    dc.acl("forbidden-neighbour.txt", f"{d}\\Staff:ALLOWED/0x0/READ", f"{d}\\svc:ALLOWED/0x0/READ")
    odd = dc.share_path / "q3: what? *now*.txt"
    odd.write_text("The plover forecast was written on the server itself.\n")
    try:
        report = indexed.sync()
        assert report["documents"]["new"] == 2, report
        assert report["failures"] == [], report
        # the share root's inheritable ACEs: the Administrator and the service account
        hits = indexed.hits("Administrator", "plover forecast written on the server")
        [name] = [h["metadata"]["path"] for h in hits if "plover" in h["page_content"]]
        assert "~" in name and ":" not in name and "?" not in name, name
        assert "forbidden-neighbour.txt" in indexed.found("bob", "bittern ledger odd name")
    finally:
        odd.unlink()


def api(port: int, data: Path, query: str, user: str) -> Any:
    import httpx

    token = json.loads((data / "service.json").read_text())["token"]
    return httpx.get(f"http://127.0.0.1:{port}/search", params={"q": query, "user": user},
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip


def test_distributed_workers_read_the_share_over_smb(
    dc: SambaDC, tmp_path: Path, redis_url: str
) -> None:
    """The watcher (change notifications) and a Celery worker, each reading the SMB share itself
    (no shared mount): documents indexed with their SIDs, a new file followed, and a file the
    service account could not read replayed by `retry --failed` once its ACL is fixed."""
    from index.catalog import FAILED
    from tests.helpers import wait_until
    from tests.workers.test_distributed import Cluster

    d = dc.domain
    dc.user("alice")
    dc.group("Dist", "alice")
    dc.mkdir("dist")
    dc.acl("dist", f"{d}\\Dist:ALLOWED/OI|CI/READ", f"{d}\\svc:ALLOWED/OI|CI/READ",
           f"{d}\\Administrator:ALLOWED/OI|CI/FULL")  # fmt: skip
    dc.put("dist/gannet.txt", "The gannet colony report counts two hundred nests.\n")
    dc.put("dist/denied.txt", "The cormorant file was closed to the service account.\n")
    dc.acl("dist/denied.txt", f"{d}\\Domain Users:DENIED/0x0/READ",
           f"{d}\\Administrator:ALLOWED/0x0/FULL")  # fmt: skip
    cluster = Cluster(tmp_path, redis_url)
    cluster.env.update({**dc.env(), "SHAREINDEX_DIRECTORY_CACHE_S": "0",
                        "SHAREINDEX_SHARES": json.dumps({"docs": f"{dc.url}/dist"})})  # fmt: skip
    try:
        cluster.worker()
        watcher = cluster.watcher()
        wait_until(lambda: cluster.indexed("gannet.txt")
                   and (r := cluster.doc("denied.txt")) is not None and r.status == FAILED,
                   120, "the first plan")  # fmt: skip
        assert "access denied to the service account" in cluster.doc("denied.txt").error
        dc.put("dist/tern.txt", "The tern census moved to the northern spit.\n")
        wait_until(lambda: cluster.indexed("tern.txt"), 120, "a new file, notified")

        def found(query: str) -> str:
            proc = run_cli("search", query, "--user", "alice", "--json", env=cluster.env)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout

        assert '"tern.txt"' in found("tern census northern spit")
        assert "sid:S-1-5-21-" in found("tern census northern spit")  # metadata.acl holds SIDs
        watcher.stop()  # only retry --failed may bring it now
        dc.acl("dist/denied.txt", f"{d}\\Dist:ALLOWED/0x0/READ", f"{d}\\svc:ALLOWED/0x0/READ",
               f"{d}\\Administrator:ALLOWED/0x0/FULL")  # fmt: skip
        proc = run_cli("retry", "--failed", "--json", env=cluster.env)
        assert proc.returncode == 0, proc.stderr
        assert '"dispatched": 1' in proc.stdout
        wait_until(lambda: cluster.indexed("denied.txt"), 120, "the retried document")
        assert '"denied.txt"' in found("cormorant file closed")
    finally:
        cluster.close()


def test_a_server_without_change_notifications_is_polled(
    dc: SambaDC, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that answers CHANGE_NOTIFY with NOT_SUPPORTED: `run` polls the share instead
    (the reconcile is an hour away), and says so. Samba always notifies, so the refusal is made
    here: opening the watch raises what smbfs raises for that status; the share is the DC's."""
    from index.search import Searcher
    from ingest import smbfs
    from tests.helpers import free_port, running_service, wait_until
    from workers.settings import load_settings

    def refused(self: smbfs.TreeWatch, location: smbfs.SmbLocation, completion: int) -> None:
        raise smbfs.NotifyUnsupported("the server sends no change notifications (NOT_SUPPORTED)")

    monkeypatch.setattr(smbfs.TreeWatch, "__init__", refused)
    dc.mkdir("quiet")
    settings = load_settings(
        data_dir=tmp_path / "data", shares={"q": f"{dc.url}/quiet"}, **dc.service_settings(),
        api_port=free_port(), debounce_s=0.2, reconcile_interval_s=3600, polling_interval_s=1,
    )  # fmt: skip
    with contextlib.closing(dc.directory()) as directory:
        admin = Principal("Administrator", sids=directory.sids_of("Administrator"))
    text = "The quail register lists every hatchery by county."
    with (
        caplog.at_level(logging.WARNING, logger="workers.sources.smb"),
        running_service(settings, timeout=120) as running,
    ):
        searcher = Searcher(running.runtime.store, running.runtime.embedder)
        wait_until(lambda: "polling it every 1 s" in caplog.text, 60, "the fallback")
        dc.put("quiet/quail.txt", text + "\n")
        wait_until(lambda: [h.metadata["path"] for h in searcher.search(text, admin, k=3)]
                   == ["quail.txt"], 120, "the polled change")  # fmt: skip
