"""A share of hostile names, end to end: Shift_JIS, EUC-JP and stray bytes, a newline, a
backslash, 60 nested folders of 250-byte names (past PATH_MAX). Every file is indexed, found by its
content at a path that gives back its bytes, shown readably, moved and deleted; an unexpected error
while planning one file costs that file only."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from index.catalog import FAILED, INDEXED
from index.permissions.posix import PermissionResolver
from index.permissions.readers import Principal
from index.search import Searcher
from ingest import paths
from tests.conftest import run_cli
from tests.helpers import free_port, running_service, wait_until
from workers.runtime import open_runtime
from workers.settings import load_settings

pytestmark = pytest.mark.integration

DEEP_LEVELS = 60


def _deep_dirs() -> list[bytes]:
    """60 folder names of 250 bytes: UTF-8 Japanese, Shift_JIS and EUC-JP in turn."""
    stems = [
        "深い階層".encode() * 21,
        "深い階層".encode("cp932") * 32,
        "深い階層".encode("euc_jp") * 32,
    ]
    return [stems[i % 3][:247] + b"%03d" % i for i in range(DEEP_LEVELS)]


#: relative path (bytes) -> a sentence only that file holds
FILES: dict[bytes, str] = {
    "報告/議事録.txt".encode("cp932"): "The walrus pump in hall three was rebuilt in May.",
    "設計書.txt".encode("euc_jp"): "The zebra valve closes when the tank is full.",
    b"stray\xff\xfe.txt": "The quokka gauge reads the boiler pressure.",
    b"line\nbreak.txt": "The lemur belt drives the second conveyor.",
    b"back\\slash\\x41.txt": "The ibis crane lifts four tonnes.",
    "ソフト表.txt".encode("cp932"): "The tapir software table lists every licence.",
    ("長い名前".encode("cp932") * 31)[:246] + b".txt": "The okapi fan spins at night.",
    b"/".join([*_deep_dirs(), "深い".encode("cp932") * 60 + b".txt"]): (
        "The narwhal compressor sits at the bottom of the tree."
    ),
}


def _write(root: Path, rel: bytes, text: str) -> None:
    """Write a file at ``rel`` through folder descriptors (the whole path may be too long)."""
    *folders, name = rel.split(b"/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for folder in folders:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, dir_fd=fd)
            fd, old = os.open(folder, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
        os.write(out, (text + "\n").encode())
        os.close(out)
    finally:
        os.close(fd)


@dataclass
class Share:
    root: Path
    data: Path

    def cli(self, *args: str) -> tuple[int, Any]:
        proc = run_cli(*args, "--data-dir", str(self.data), "--json")
        assert proc.returncode in (0, 3), proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def sync(self) -> tuple[int, Any]:
        return self.cli("sync", "--share", f"names={self.root}")

    def find(self, sentence: str) -> list[dict[str, Any]]:
        _, hits = self.cli("search", sentence, "--k", "3")
        return [h for h in hits if h["page_content"] == sentence]


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Share:
    base = tmp_path_factory.mktemp("names")
    root = base / "share"
    root.mkdir()
    for rel, text in FILES.items():
        _write(root, rel, text)
    broken = "報告/壊れた.pdf".encode("cp932")
    (root / os.fsdecode(broken)).write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    return Share(root, base / "data")


def test_every_file_is_indexed_and_found_at_a_path_that_gives_back_its_bytes(
    share: Share,
) -> None:
    assert len(max(FILES, key=len)) > 4096 * 3  # past PATH_MAX: reached folder by folder
    rc, report = share.sync()
    assert rc == 3, report  # the broken PDF, and only it
    assert report["documents"]["new"] == len(FILES)
    assert report["documents"]["failed"] == 1
    [failure] = report["failures"]
    assert paths.to_bytes(failure["path"]) == "報告/壊れた.pdf".encode("cp932")
    for rel, text in FILES.items():
        hits = share.find(text)
        assert hits, f"{rel!r} not found by its content"
        meta = hits[0]["metadata"]
        assert paths.to_bytes(meta["path"]) == rel
        assert (share.root / paths.to_os(meta["path"])).name == os.fsdecode(rel.split(b"/")[-1])
    walrus = share.find(FILES["報告/議事録.txt".encode("cp932")])[0]["metadata"]
    assert (walrus["display_path"], walrus["filename"]) == ("報告/議事録.txt", "議事録.txt")
    zebra = share.find(FILES["設計書.txt".encode("euc_jp")])[0]["metadata"]
    assert zebra["display_path"] == "設計書.txt"


def test_status_and_search_show_readable_names(share: Share) -> None:
    _, status = share.cli("status")
    assert status["documents"]["indexed"] == len(FILES)
    assert [d["display_path"] for d in status["failed"]] == ["報告/壊れた.pdf"]
    human = run_cli("status", "--data-dir", str(share.data))
    assert "names:報告/壊れた.pdf: " in human.stdout
    shown = run_cli("search", FILES[b"line\nbreak.txt"], "--k", "1", "--data-dir", str(share.data))
    assert "names:line\\nbreak.txt [" in shown.stdout


def test_acl_explain_takes_such_a_name_as_typed_or_as_shown(share: Share) -> None:
    rel = "報告/議事録.txt".encode("cp932")
    typed = os.fsdecode(bytes(share.root) + b"/" + rel)  # what a shell hands over: the bytes
    shown = "names:" + paths.from_bytes(rel)  # the path search results and status give
    for target in (typed, shown):
        proc = run_cli("acl", "explain", target, "--share", f"names={share.root}", "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert paths.to_bytes(report["path"]) == rel
        assert report["index_allows"]  # 0644 under 0755 folders: everyone


def test_a_resync_is_unchanged_and_moves_and_deletes_follow_the_bytes(share: Share) -> None:
    rc, report = share.sync()
    assert report["documents"]["unchanged"] == len(FILES) + 1, report
    old = share.root / os.fsdecode("報告/議事録.txt".encode("cp932"))
    moved = "報告/".encode("cp932") + "議事録_改.txt".encode("euc_jp")  # another encoding
    new = share.root / os.fsdecode(moved)
    os.rename(old, new)
    os.unlink(share.root / os.fsdecode("設計書.txt".encode("euc_jp")))
    rc, report = share.sync()
    docs = report["documents"]
    assert (docs["moved"], docs["deleted"], docs["new"]) == (1, 1, 0), report
    assert report["chunks"]["embedded"] == 0
    [hit] = share.find(FILES["報告/議事録.txt".encode("cp932")])
    assert paths.to_bytes(hit["metadata"]["path"]) == moved
    assert hit["metadata"]["display_path"] == "報告/議事録_改.txt"
    assert share.find(FILES["設計書.txt".encode("euc_jp")]) == []


def test_the_running_service_follows_changes_to_such_names(tmp_path: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    settings = load_settings(
        data_dir=tmp_path / "data", shares={"live": root}, api_port=free_port(), debounce_s=0.2
    )
    with running_service(settings) as running:
        searcher = Searcher(running.runtime.store, running.runtime.embedder)

        def found(text: str) -> list[str]:
            hits = searcher.search(text, Principal(), k=3)
            return [h.metadata["path"] for h in hits if h.page_content == text]

        sjis = "図面/部品表.txt".encode("cp932")
        deep = b"/".join([*_deep_dirs()[:20], b"stray\xff.txt"])
        _write(root, sjis, "The heron drill is stored in cabinet nine.")
        _write(root, deep, "The ferret lathe is oiled every week.")
        want = {sjis: "The heron drill is stored in cabinet nine.",
                deep: "The ferret lathe is oiled every week."}  # fmt: skip
        for rel, text in want.items():
            wait_until(lambda r=rel, t=text: [paths.from_bytes(r)] == found(t), 60, f"{rel!r}")
        renamed = "図面/部品表_旧.txt".encode("cp932")
        os.rename(root / os.fsdecode(sjis), root / os.fsdecode(renamed))
        wait_until(lambda: found(want[sjis]) == [paths.from_bytes(renamed)], 60, "the rename")
        os.unlink(root / os.fsdecode(renamed))
        wait_until(lambda: found(want[sjis]) == [], 60, "the delete")
        assert not [line for line in running.said if "failed" in line], running.said


def test_an_unexpected_error_planning_one_file_costs_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "share"
    root.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (root / name).write_text(f"The {name[0]} document is about pallets.\n")
    resolve = PermissionResolver.resolve

    def flaky(self: PermissionResolver, share: str, root_: str, path: str) -> Any:
        if path == "b.txt":
            raise RuntimeError("a bug that only b.txt meets")
        return resolve(self, share, root_, path)

    monkeypatch.setattr(PermissionResolver, "resolve", flaky)
    runtime = open_runtime(load_settings(data_dir=tmp_path / "data", shares={"s": root}))
    try:
        report = runtime.indexer.sync_share("s")
        assert (report.new, report.failed) == (2, 1)
        [failure] = report.failures
        assert failure["path"] == "b.txt"
        assert "a bug that only b.txt meets" in failure["reason"]
        docs = {p: runtime.catalog.find("s", p) for p in ("a.txt", "b.txt", "c.txt")}
        assert docs["a.txt"].status == docs["c.txt"].status == INDEXED
        assert docs["b.txt"].status == FAILED
        assert "unexpected error while planning" in (docs["b.txt"].error or "")
    finally:
        runtime.close()
