"""Access control end to end, on real files with real owners, groups, modes and POSIX ACLs: the
resolver, revocations in the running service (without re-embedding), the authenticated API and
``acl explain``. Needs root (chown, setfacl, useradd), as CI has."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from index.permissions.callers import new_token
from index.permissions.posix import PermissionResolver
from index.permissions.readers import EVERYONE, Principal
from index.search import Searcher
from tests.conftest import run_cli
from tests.helpers import free_port, system_accounts, wait_until
from workers.runtime import Runtime, open_runtime
from workers.settings import load_settings
from workers.watch.embedded import EmbeddedService

pytestmark = pytest.mark.integration
#: names unique to this run: a machine that is not fresh may already have users called alice
#: (with other groups), or what an interrupted run left behind
_RUN = uuid.uuid4().hex[:6]
ALICE_NAME, BOB_NAME, CAROL_NAME = (f"si{_RUN}_{n}" for n in ("alice", "bob", "carol"))
ENG, HR = f"si{_RUN}_eng", f"si{_RUN}_hr"
USERS = {ALICE_NAME: [ENG], BOB_NAME: [HR], CAROL_NAME: [ENG, HR]}


@pytest.fixture(scope="session")
def accounts() -> Iterator[dict[str, int]]:
    """Test users and groups in the system databases, created for this run and removed after."""
    import pwd

    with system_accounts(USERS, "the ACL tests (chown, setfacl, useradd)"):
        yield {user: pwd.getpwnam(user).pw_uid for user in USERS}


def test_resolver_reads_modes_acls_and_parent_directories(
    accounts: dict[str, int], tmp_path: Path
) -> None:
    root = tmp_path / "share"
    (root / "eng").mkdir(parents=True)
    os.chmod(root, 0o755)
    shutil.chown(root / "eng", ALICE_NAME, ENG)
    os.chmod(root / "eng", 0o750)  # only alice and the eng group may traverse
    public_inside = root / "eng" / "spec.md"
    public_inside.write_text("x")
    os.chmod(public_inside, 0o644)
    acl_file = root / "acl.txt"
    acl_file.write_text("x")
    shutil.chown(acl_file, ALICE_NAME, ENG)
    os.chmod(acl_file, 0o600)
    subprocess.run(["setfacl", "-m", f"u:{BOB_NAME}:r,g:{HR}:r", str(acl_file)], check=True)

    resolver = PermissionResolver()
    access, note = resolver.resolve("s", str(root), "eng/spec.md")
    assert note is None
    assert EVERYONE not in access.allow  # public file, closed directory: not public
    assert access.allow == {f"user:{ALICE_NAME}", f"group:{ENG}"}

    access, _ = resolver.resolve("s", str(root), "acl.txt")
    assert access.allow == {f"user:{ALICE_NAME}", f"user:{BOB_NAME}", f"group:{HR}"}
    subprocess.run(
        ["setfacl", "-m", "m::---", str(acl_file)], check=True
    )  # the mask hides named entries
    resolver.reset()
    assert resolver.resolve("s", str(root), "acl.txt")[0].allow == {f"user:{ALICE_NAME}"}


def test_an_unreadable_acl_means_nobody(
    accounts: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f.txt").write_text("x")

    def broken(*_a: object, **_k: object) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "getxattr", broken)
    access, note = PermissionResolver().resolve("s", str(tmp_path), "f.txt")
    assert access.allow == frozenset()
    assert note == "cannot read the POSIX ACL: Input/output error; readable by nobody"


# -- the running service ----------------------------------------------------------------------
@dataclass
class Secured:
    root: Path
    config: Path
    runtime: Runtime
    service: EmbeddedService
    tokens: dict[str, str]

    def sees(self, principal: Principal, query: str, path: str) -> bool:
        hits = Searcher(self.runtime.store, self.runtime.embedder).search(query, principal, k=20)
        return any(h.metadata["path"] == path for h in hits)

    def api(self, token: str | None, route: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.service.url}{route}", params=params, headers=headers, timeout=30)

    def doc_id(self, path: str) -> str:
        return self.runtime.catalog.find("sec", path).id  # type: ignore[union-attr]


def _config(path: Path, root: Path, rules: str, hashes: dict[str, str]) -> None:
    path.write_text(
        f'[shares]\nsec = "{root}"\n\n'
        f'[[api_tokens]]\nname = "alice"\nsha256 = "{hashes["alice"]}"\nuser = "{ALICE_NAME}"\n\n'
        f'[[api_tokens]]\nname = "frontend"\nsha256 = "{hashes["frontend"]}"\non_behalf = true\n\n'
        f'[[api_tokens]]\nname = "ops"\nsha256 = "{hashes["ops"]}"\nuser = "{CAROL_NAME}"\nadmin = true\n\n'
        + rules
    )


@pytest.fixture(scope="module")
def secured(
    accounts: dict[str, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    base = tmp_path_factory.mktemp("acl")
    root = base / "share"
    root.mkdir()
    os.chmod(root, 0o755)
    tokens, hashes = {}, {}
    for name in ("alice", "frontend", "ops"):
        tokens[name], hashes[name] = new_token()
    config = base / "shareindex.toml"
    _config(config, root, "", hashes)
    port = free_port()

    def load() -> Any:
        return load_settings(str(config), data_dir=base / "data", api_port=port, debounce_s=0.2)

    settings = load()
    said: list[str] = []
    runtime = open_runtime(settings, lanes=said.append)
    service = EmbeddedService(settings, runtime, said.append, str(config), load)
    thread = threading.Thread(target=service.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    wait_until(lambda: any("reconciled" in line for line in said), 60, "the first reconcile")
    secured = Secured(root, config, runtime, service, tokens)
    secured.hashes = hashes  # type: ignore[attr-defined]
    yield secured
    service.request_stop()
    thread.join(timeout=30)
    runtime.close()


def _put(
    secured: Secured,
    rel: str,
    text: str,
    owner: str = "root",
    group: str = "root",
    mode: int = 0o644,
) -> None:
    path = secured.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    path.write_text(text)
    shutil.chown(path, owner, group)
    os.chmod(path, mode)
    wait_until(
        lambda: (
            secured.runtime.catalog.find("sec", rel)
            and secured.runtime.catalog.find("sec", rel).status == "indexed"
        ),
        20,
        f"{rel} indexed",
    )
    # idle: nothing pending could re-read the file and mask a permission event that got lost
    service = secured.service
    wait_until(
        lambda: service.events.empty() and len(service.debouncer) == 0, 20, "the service idle"
    )


ANON, ALICE, BOB, CAROL = (
    Principal(),
    Principal(ALICE_NAME, (ENG,)),
    Principal(BOB_NAME, (HR,)),
    Principal(CAROL_NAME, (ENG, HR)),
)


def test_revocations_reach_the_index_without_re_embedding(secured: Secured) -> None:
    _put(secured, "memo.txt", "The quarterly bonus pool for the welding team is frozen.\n")
    q = "quarterly bonus pool welding"
    assert secured.sees(ANON, q, "memo.txt")
    embedded = secured.runtime.embedder.embedded_total

    os.chmod(secured.root / "memo.txt", 0o640)  # chmod o-r
    wait_until(lambda: not secured.sees(ANON, q, "memo.txt"), 10, "chmod o-r applied")
    assert secured.sees(Principal("root", ("root",)), q, "memo.txt")

    shutil.chown(secured.root / "memo.txt", BOB_NAME, HR)  # chown
    wait_until(lambda: secured.sees(BOB, q, "memo.txt"), 10, "chown applied")
    assert not secured.sees(ALICE, q, "memo.txt")

    subprocess.run(
        ["setfacl", "-m", f"u:{ALICE_NAME}:r", str(secured.root / "memo.txt")], check=True
    )
    wait_until(lambda: secured.sees(ALICE, q, "memo.txt"), 10, "setfacl -m applied")
    subprocess.run(["setfacl", "-x", f"u:{ALICE_NAME}", str(secured.root / "memo.txt")], check=True)
    wait_until(lambda: not secured.sees(ALICE, q, "memo.txt"), 10, "setfacl -x applied")

    os.chmod(secured.root / "memo.txt", 0o644)
    (secured.root / "closed").mkdir()
    _put(secured, "closed/inner.txt", "Inner file about the conveyor lubrication plan.\n")
    assert secured.sees(ANON, "conveyor lubrication plan", "closed/inner.txt")
    os.chmod(
        secured.root / "closed", 0o750
    )  # the directory closes: the file inside is no longer public
    wait_until(
        lambda: not secured.sees(ANON, "conveyor lubrication plan", "closed/inner.txt"),
        10,
        "dir chmod",
    )
    assert secured.runtime.embedder.embedded_total == embedded + 1  # only the new inner.txt


def test_a_rule_edited_in_the_config_reaches_the_index(secured: Secured) -> None:
    _put(secured, "hr/salaries.txt", "Salary bands for the assembly line technicians.\n")
    q = "salary bands assembly technicians"
    assert secured.sees(ANON, q, "hr/salaries.txt")
    embedded = secured.runtime.embedder.embedded_total
    rules = f'[[acl_rules]]\nshare = "sec"\npath = "hr/*"\nrestrict_to = ["group:{HR}"]\ndeny = ["user:{CAROL_NAME}"]\n'
    _config(secured.config, secured.root, rules, secured.hashes)  # type: ignore[attr-defined]
    wait_until(lambda: not secured.sees(ANON, q, "hr/salaries.txt"), 10, "the rule applied")
    assert secured.sees(BOB, q, "hr/salaries.txt")
    assert not secured.sees(CAROL, q, "hr/salaries.txt")  # in the hr group, but denied by name
    assert secured.sees(ANON, "quarterly bonus pool welding", "memo.txt")  # other paths untouched
    assert secured.runtime.embedder.embedded_total == embedded


def test_api_requires_a_token_and_a_token_cannot_choose_its_principal(secured: Secured) -> None:
    _put(
        secured,
        "bob-only.txt",
        "Bob's notes on the crane inspection schedule.\n",
        BOB_NAME,
        BOB_NAME,
        0o600,
    )
    q = "crane inspection schedule"
    assert secured.api(None, "/search", q=q).status_code == 401
    assert secured.api("si_wrong", "/search", q=q).status_code == 401
    alice = secured.tokens["alice"]
    assert secured.api(alice, "/search", q=q, user=BOB_NAME).status_code == 403  # impersonation
    hits = secured.api(alice, "/search", q=q, k=20).json()
    assert "bob-only.txt" not in {h["metadata"]["path"] for h in hits}
    frontend = secured.tokens["frontend"]  # a trusted service passes the user's principal
    hits = secured.api(frontend, "/search", q=q, user=BOB_NAME, k=5).json()
    assert hits[0]["metadata"]["path"] == "bob-only.txt"
    hits = secured.api(frontend, "/search", q=q, k=20).json()  # no principal: public only
    assert "bob-only.txt" not in {h["metadata"]["path"] for h in hits}


def test_document_neighbour_and_status_endpoints_obey_the_acl(secured: Secured) -> None:
    text = "\n\n".join(
        f"Paragraph {i} of the secret furnace relining plan. " * 12 for i in range(6)
    )
    _put(secured, "furnace.md", text, BOB_NAME, HR, 0o640)
    doc_id = secured.doc_id("furnace.md")
    alice, frontend, ops = (
        secured.tokens["alice"],
        secured.tokens["frontend"],
        secured.tokens["ops"],
    )
    assert secured.api(alice, f"/documents/{doc_id}").status_code == 404
    chunks = secured.api(frontend, f"/documents/{doc_id}", user=BOB_NAME).json()
    assert len(chunks) > 2 and [c["metadata"]["chunk_index"] for c in chunks] == list(
        range(len(chunks))
    )
    near = secured.api(frontend, f"/documents/{doc_id}/chunks/1/neighbours", user=BOB_NAME).json()
    assert [c["metadata"]["chunk_index"] for c in near] == [0, 1, 2]
    assert secured.api(alice, f"/documents/{doc_id}/chunks/1/neighbours").status_code == 404
    assert set(secured.api(alice, "/status").json()) == {
        "documents",
        "freshness",
        "behind_s",
    }  # counts only
    assert "failed" in secured.api(ops, "/status").json()  # admin: the full report
    assert secured.api(None, "/metrics").status_code == 200


def test_acl_explain_names_what_decided(accounts: dict[str, int], tmp_path: Path) -> None:
    root = tmp_path / "share"
    (root / "eng").mkdir(parents=True)
    os.chmod(root, 0o755)
    shutil.chown(root / "eng", ALICE_NAME, ENG)
    os.chmod(root / "eng", 0o750)
    (root / "eng" / "spec.md").write_text("x")
    os.chmod(root / "eng" / "spec.md", 0o644)
    proc = run_cli(
        "acl", "explain", str(root / "eng" / "spec.md"), "--user", BOB_NAME, "--share", f"s={root}"
    )
    assert proc.returncode == 0, proc.stderr
    assert "NO  traverse eng/" in proc.stdout and "other entry ---" in proc.stdout
    assert "verdict: cannot read" in proc.stdout
    proc = run_cli(
        "acl", "explain", "s:eng/spec.md", "--user", CAROL_NAME, "--share", f"s={root}", "--json"
    )
    report = json.loads(proc.stdout)
    assert report["index_allows"] and report["filesystem_allows"]
    assert report["steps"][1]["decided_by"] == "owning group entry r-x"
    assert report["acl"] == [f"group:{ENG}", f"user:{ALICE_NAME}"]
