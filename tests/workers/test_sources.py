"""The ``Source`` contract, one suite run on every kind of share: a local folder, and an SMB share
of the test Samba DC read over the protocol (``SmbShare``, built directly). What the planner,
the processor, the parse processes and the watcher rely on: listing, stat, reading with its
limits, a reader that works in another process, permissions, the share's own layer, the root's
identity, and changes reported by the watch."""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from index.permissions.posix import PermissionResolver
from index.permissions.rules import RuleBook
from ingest.errors import EmptyDocument, FileChanged, TooLarge
from ingest.readers import ShareReader
from tests.helpers import wait_until
from tests.samba import USER_PASSWORD, SambaDC
from workers.sources.base import Change, Source
from workers.sources.local import LocalFolder
from workers.sources.smb import SmbShare


@dataclass
class Made:
    """A share of one kind, and how the test changes it from outside ShareIndex."""

    source: Source
    put: Callable[[str, bytes], None]
    mkdir: Callable[[str], None]
    remove: Callable[[str], None]


@pytest.fixture(scope="module")
def contract_share(dc: SambaDC) -> str:
    return dc.take_share()


@pytest.fixture(params=["local", "smb"])
def made(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Made]:
    if request.param == "local":
        root = tmp_path / "share"
        root.mkdir()
        yield Made(
            LocalFolder("contract", str(root), PermissionResolver(RuleBook())),
            lambda rel, data: (root / rel).write_bytes(data),
            lambda rel: (root / rel).mkdir(),
            lambda rel: (root / rel).unlink(),
        )
        return
    dc: SambaDC = request.getfixturevalue("dc")
    name = request.getfixturevalue("contract_share")
    source = SmbShare("contract", f"smb://{dc.ip}/{name}", f"{dc.domain}\\svc", USER_PASSWORD,
                      RuleBook())  # fmt: skip
    yield Made(
        source,
        lambda rel, data: dc.put_on(name, rel, data),
        lambda rel: dc.run_on(name, f'mkdir "{rel}"'),
        lambda rel: dc.run_on(name, f'del "{rel}"'),
    )


def _read_elsewhere(reader: ShareReader, path: str, out: multiprocessing.Queue[bytes]) -> None:
    out.put(reader.read(path, 1 << 20).data)


def test_scan_stat_and_read(made: Made) -> None:
    made.mkdir("sub")
    made.put("a.txt", b"alpha bytes\n")
    made.put("sub/b.md", b"# beta\n")
    made.put("skip.tmp", b"an ignored name\n")
    made.put("empty.txt", b"")
    src = made.source
    listed = {e.path: e for e in src.scan(["*.tmp"])}
    assert {"a.txt", "sub/b.md", "empty.txt"} <= set(listed)  # nested too
    assert "sub" not in listed and "skip.tmp" not in listed  # files only, ignored names out
    assert listed["a.txt"].size == len(b"alpha bytes\n")
    entry = src.stat("sub/b.md")
    assert entry is not None and entry.size == len(b"# beta\n")
    assert src.read("a.txt", 1 << 20).data == b"alpha bytes\n"
    with pytest.raises(TooLarge):
        src.read("a.txt", 4)
    with pytest.raises(EmptyDocument):
        src.read("empty.txt", 1 << 20)
    made.remove("a.txt")
    assert src.stat("a.txt") is None
    with pytest.raises(FileChanged):
        src.read("a.txt", 1 << 20)


def test_the_reader_reads_in_another_process(made: Made) -> None:
    """What a parse process gets: the Source's reader, pickled, reads the same bytes."""
    made.put("p.txt", b"read in a parse process\n")
    out: multiprocessing.Queue[bytes] = multiprocessing.get_context("spawn").Queue()
    proc = multiprocessing.get_context("spawn").Process(
        target=_read_elsewhere, args=(made.source.reader, "p.txt", out)
    )
    proc.start()
    try:
        assert out.get(timeout=120) == b"read in a parse process\n"
    finally:
        proc.join(60)
    assert made.source.reader.location == made.source.location


def test_permissions_share_layer_and_root_identity(made: Made) -> None:
    made.put("r.txt", b"who may read me\n")
    src = made.source
    access, note = src.permissions("r.txt")
    assert note is None and access.allow  # someone may read it (and the tokens say who)
    layer = src.share_access()
    assert layer.origin in ("local", "server") and layer.access.allow and layer.warning is None
    src.new_pass()
    first = src.root_identity()
    src.new_pass()
    assert first is not None and src.root_identity() == first


def test_the_watch_reports_a_new_file(made: Made) -> None:
    changes: queue.Queue[Change] = queue.Queue()
    watch = made.source.watch(changes, polling=False, interval_s=1.0)
    try:
        made.put("new.txt", b"a file written while watched\n")
        seen: set[str] = set()

        def reported() -> bool:
            while not changes.empty():
                seen.add(changes.get().path)
            return "new.txt" in seen or "" in seen  # the file, or a rescan of the share

        wait_until(reported, 120, "the new file reported")
    finally:
        watch.stop()


def test_a_link_in_a_local_folder_is_never_followed(tmp_path: Path) -> None:
    """(A local folder's part of the contract: the test DC cannot make a reparse point.)"""
    root = tmp_path / "share"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the share\n")
    os.symlink(outside, root / "link.txt")
    source = LocalFolder("contract", str(root), PermissionResolver(RuleBook()))
    [entry] = [e for e in source.scan([]) if e.path == "link.txt"]
    assert entry.problem  # listed with the reason it is not opened
    with pytest.raises(Exception, match="link"):
        source.read("link.txt", 1 << 20)
