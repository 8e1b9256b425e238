"""The chaos soak (issue 20, part 2): random operations on a share while the processes that index
it are killed with -9 and restarted, and, in the distributed mode, Redis is restarted with and
without its data and the catalog database is cut off for a while. When it is over and the
system has settled, the index must equal the share: ``verify`` clean, every document once, at
its newest content, found by a search, and nothing else found.

Every file of the share carries markers: the document's (``<tag>d<N>``), and one per write
(``<tag>d<N>r<K>``, a new K for each edit, append or save). The model of the share
(``ChaosShare.files``) knows which write markers each file holds now, so any chunk of an older
version, of a file that is gone or of a path it was moved from is told apart by its markers.

Used by ``tests/workers/test_soak.py`` (about a minute a mode, in ``make test``) and
``bench/bench_soak.py`` (ten minutes, in ``make bench``)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from index.catalog import DELETED, INDEXED, PENDING, Catalog
from tests.helpers import QUICK_TIMINGS, Proc, free_port, wait_until

_WORDS = (
    "pump valve bearing seal impeller flange gasket motor shaft housing coupling filter "
    "compressor chiller boiler turbine conveyor hydraulic pressure vibration inspection "
    "maintenance schedule replacement torque alignment lubrication corrosion leak sensor "
    "calibration thermostat relay breaker transformer cable insulation ventilation duct "
    "intake exhaust nozzle injector cylinder piston crankshaft gearbox clutch brake spindle"
).split()
_NAMES = ("note", "report", "spec", "memo", "点検記録", "議事録 draft", "Q3 summary")
_MODES = (0o644, 0o640, 0o600)  # always readable by the owner the tests search as


@dataclass
class ChaosFile:
    doc: int
    revs: list[str]  # the write markers the file holds now


@dataclass
class ChaosShare:
    """A share changed at random, and the model of what it holds. Seeded: the same seed gives
    the same operations (their timing against the kills depends on the machine)."""

    root: Path
    seed: int
    files: dict[str, ChaosFile] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {""})
    ops: Counter[str] = field(default_factory=Counter)
    low: int = 25
    high: int = 90

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.tag = f"sk{self.seed % 10_000}"
        self._docs = 0
        self._revs = 0
        self._folders = 0

    # -- what the files say ---------------------------------------------------------------------
    def marker(self, doc: int) -> str:
        return f"{self.tag}d{doc}"

    def markers_in(self, text: str) -> tuple[set[int], set[str]]:
        """The document numbers and write markers a text holds."""
        found = re.findall(rf"\b({self.tag}d(\d+)(?:r\d+)?)\b", text)
        return {int(n) for _, n in found}, {m for m, _ in found if "r" in m[len(self.tag) :]}

    def _paragraphs(self, doc: int, count: int) -> tuple[str, str]:
        self._revs += 1
        rev = f"{self.marker(doc)}r{self._revs}"
        paras = []
        for _ in range(count):
            a, b, c = self.rng.sample(_WORDS, 3)
            paras.append(f"The {a} near the {b} needs {c} work, says record {self.marker(doc)} "
                         f"entry {rev}; checked {self.rng.randint(1, 28)} days ago.")  # fmt: skip
        return rev, "\n\n".join(paras) + "\n"

    def _write(self, rel: str, doc: int, append: bool = False) -> str:
        count = 1 if append else self.rng.choice((1, 1, 2, 3, 12))  # some span several chunks
        rev, body = self._paragraphs(doc, count)
        path = self.root / rel
        if rel.endswith(".html") and not append:
            body = f"<html><body><h1>Record {self.marker(doc)}</h1><p>{body}</p></body></html>\n"
        with path.open("a" if append else "w", encoding="utf-8") as f:
            f.write(("\n" if append else "") + body)
        return rev

    # -- operations -----------------------------------------------------------------------------
    def seed_files(self, count: int) -> None:
        for _ in range(count):
            self.create()
        self.ops.clear()

    def step(self) -> str:
        """One random operation; its kind."""
        n = len(self.files)
        choices: list[tuple[str, float]] = [
            ("create", 3 if n < self.high else 0.2), ("edit", 3), ("append", 2), ("save", 1),
            ("resave", 1), ("rename", 1.5), ("move_folder", 0.5), ("delete", 1.5 if n > self.low else 0.2),
            ("delete_folder", 0.2), ("chmod", 1), ("mkdir", 0.4),
        ]  # fmt: skip
        if not self.files:
            choices = [("create", 1)]
        kind = self.rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        did = getattr(self, kind)()
        self.ops[did] += 1
        return str(did)

    def _some_file(self, *suffixes: str) -> str | None:
        names = sorted(p for p in self.files if not suffixes or p.endswith(suffixes))
        return self.rng.choice(names) if names else None

    def _new_name(self, folder: str, doc: int) -> str:
        ext = self.rng.choice((".txt", ".txt", ".md", ".html"))
        name = f"{self.rng.choice(_NAMES)} {doc}{ext}"
        return f"{folder}/{name}" if folder else name

    def create(self) -> str:
        self._docs += 1
        doc = self._docs
        rel = self._new_name(self.rng.choice(sorted(self.dirs)), doc)
        rev = self._write(rel, doc)
        self.files[rel] = ChaosFile(doc, [rev])
        return "create"

    def edit(self) -> str:
        rel = self._some_file()
        if rel is None:
            return self.create()
        self.files[rel].revs = [self._write(rel, self.files[rel].doc)]
        return "edit"

    def append(self) -> str:
        rel = self._some_file(".txt", ".md")
        if rel is None:
            return self.edit()
        self.files[rel].revs.append(self._write(rel, self.files[rel].doc, append=True))
        return "append"

    def save(self) -> str:
        """An editor's save: a temporary file beside it, renamed over it."""
        rel = self._some_file()
        if rel is None:
            return self.create()
        folder, _, name = rel.rpartition("/")
        temp = f"{folder}/.~{name}.tmp" if folder else f".~{name}.tmp"
        rev = self._write(temp, self.files[rel].doc)
        mode = (self.root / rel).stat().st_mode & 0o777
        os.chmod(self.root / temp, mode)
        os.replace(self.root / temp, self.root / rel)
        self.files[rel].revs = [rev]
        return "save"

    def resave(self) -> str:
        """Rapid re-saves: the same file written several times back to back."""
        rel = self._some_file()
        if rel is None:
            return self.create()
        for _ in range(self.rng.randint(3, 6)):
            self.files[rel].revs = [self._write(rel, self.files[rel].doc)]
        return "resave"

    def rename(self) -> str:
        rel = self._some_file()
        if rel is None:
            return self.create()
        entry = self.files.pop(rel)
        if self.rng.random() < 0.2 and self.files:  # onto another file, which it replaces
            target = self.rng.choice(sorted(self.files))
        else:
            target = self._new_name(self.rng.choice(sorted(self.dirs)), entry.doc)
            if target.rsplit(".", 1)[-1] != rel.rsplit(".", 1)[-1]:
                target = target.rsplit(".", 1)[0] + "." + rel.rsplit(".", 1)[-1]
        if target in self.files or target == rel:
            self.files.pop(target, None)
        os.replace(self.root / rel, self.root / target)
        self.files[target] = entry
        return "rename"

    def mkdir(self) -> str:
        parent = self.rng.choice(sorted(self.dirs))
        self._folders += 1
        name = f"{parent}/dept {self._folders}" if parent else f"dept {self._folders}"
        (self.root / name).mkdir()
        self.dirs.add(name)
        return "mkdir"

    def move_folder(self) -> str:
        movable = sorted(d for d in self.dirs if d)
        if not movable:
            return self.mkdir()
        source = self.rng.choice(movable)
        parents = sorted(d for d in self.dirs if d != source and not d.startswith(source + "/"))
        parent = self.rng.choice(parents)
        self._folders += 1
        target = f"{parent}/moved {self._folders}" if parent else f"moved {self._folders}"
        os.rename(self.root / source, self.root / target)

        def moved(path: str) -> str:
            return target + path[len(source) :] if path.startswith(source + "/") else path

        self.dirs = {target if d == source else moved(d) for d in self.dirs}
        self.files = {moved(p): f for p, f in self.files.items()}
        return "move_folder"

    def delete(self) -> str:
        rel = self._some_file()
        if rel is None:
            return self.create()
        (self.root / rel).unlink()
        del self.files[rel]
        return "delete"

    def delete_folder(self) -> str:
        small = sorted(
            d for d in self.dirs if d and sum(p.startswith(d + "/") for p in self.files) <= 3
        )
        if not small:
            return self.delete()
        gone = self.rng.choice(small)
        shutil.rmtree(self.root / gone)
        self.dirs = {d for d in self.dirs if d != gone and not d.startswith(gone + "/")}
        self.files = {p: f for p, f in self.files.items() if not p.startswith(gone + "/")}
        return "delete_folder"

    def chmod(self) -> str:
        rel = self._some_file()
        if rel is None:
            return self.create()
        os.chmod(self.root / rel, self.rng.choice(_MODES))
        return "chmod"


# -- what the system is asked at the end ---------------------------------------------------------
def unsettled(catalog: Catalog, share: ChaosShare, name: str = "docs") -> list[str]:
    """What keeps the catalog from equalling the share (empty: settled): a file it does not
    have at the content the file has now (its mtime), a document it has for a path that is
    gone, anything pending."""
    live = {p: r for p, r in catalog.documents(name).items() if r.status != DELETED}
    problems = [f"{p}: not in the catalog" for p in sorted(set(share.files) - set(live))]
    problems += [f"{p}: in the catalog ({r.status}), gone from the share"
                 for p, r in sorted(live.items()) if p not in share.files]  # fmt: skip
    for rel in sorted(set(live) & set(share.files)):
        record = live[rel]
        try:
            mtime_ns = (share.root / rel).stat().st_mtime_ns
        except FileNotFoundError:
            mtime_ns = None
        if record.status != INDEXED or record.mtime_ns != mtime_ns:
            problems.append(f"{rel}: {record.status} v{record.version} {record.error or ''} "
                            f"(catalog mtime {record.mtime_ns}, file {mtime_ns})")  # fmt: skip
    pending = catalog.counts()[PENDING]
    if pending and not problems:
        problems.append(f"{pending} pending")
    return problems


def settled(catalog: Catalog, share: ChaosShare, name: str = "docs") -> bool:
    return not unsettled(catalog, share, name)


def wait_settled(catalog: Catalog, share: ChaosShare, timeout: float,
                 log: Callable[[str], None] = print) -> float:  # fmt: skip
    """Seconds until the catalog settles and stays settled for two seconds; what keeps it from
    settling is logged after 30 s, and is the error after ``timeout``."""
    start = time.monotonic()
    told = False
    while True:
        problems = unsettled(catalog, share)
        took = time.monotonic() - start
        if not problems:
            time.sleep(2)
            if settled(catalog, share):
                return round(took, 1)
            continue
        if took > 30 and not told:
            told = True
            log(f"soak: not settled after {took:.0f} s: " + "; ".join(problems[:20]))
        assert took < timeout, "the system did not settle: " + "; ".join(problems[:20])
        time.sleep(0.2)


class Api:
    """The query API of the process holding the index (``service.json`` of the data dir), asked
    on behalf of the owner of the share's files (some are readable by their owner only)."""

    def __init__(self, data: Path) -> None:
        info = json.loads((data / "service.json").read_text())
        self.url, self.headers = info["url"], {"Authorization": f"Bearer {info['token']}"}
        self.user = pwd.getpwuid(os.getuid()).pw_name

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}{path}", params={"user": self.user, **params},
                      headers=self.headers, timeout=60)  # fmt: skip
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()


def check_index(
    api: Api, catalog: Catalog, share: ChaosShare, name: str = "docs"
) -> dict[str, int]:
    """Every file of the share indexed once, at its newest content, found by a search for its
    newest write; no search returns a chunk of another version, of a path that is gone, or
    twice. Raises AssertionError naming the first document that is wrong."""
    records = catalog.documents(name)
    searches = chunks = 0
    for rel, entry in sorted(share.files.items()):
        record = records[rel]
        found = api.get(f"/documents/{record.id}")
        assert found, f"{rel}: no chunks in the index"
        meta = [h["metadata"] for h in found]
        assert {m["path"] for m in meta} == {rel}, (rel, {m["path"] for m in meta})
        assert {m["version"] for m in meta} == {record.version}, (rel, record.version)
        indexes = sorted(m["chunk_index"] for m in meta)
        assert indexes == list(range(record.chunk_count)), (rel, indexes, record.chunk_count)
        docs, revs = share.markers_in(" ".join(h["page_content"] for h in found))
        assert docs == {entry.doc} and revs == set(entry.revs), (rel, docs, revs, entry)
        chunks += len(found)

        hits = api.get("/search", q=f"{share.marker(entry.doc)} {entry.revs[-1]}", k=10,
                       mode="sparse")  # fmt: skip
        searches += 1
        assert any(h["metadata"]["path"] == rel for h in hits), f"{rel}: not found by its words"
        seen: set[tuple[str, int]] = set()
        for hit in hits:
            path, meta_ = hit["metadata"]["path"], hit["metadata"]
            assert path in share.files, f"search for {rel} returned {path}, which is gone"
            assert meta_["version"] == records[path].version, (path, meta_["version"])
            _, hit_revs = share.markers_in(hit["page_content"])
            assert hit_revs <= set(share.files[path].revs), f"{path}: old content {hit_revs}"
            key = (path, meta_["chunk_index"])
            assert key not in seen, f"{key} returned twice"
            seen.add(key)
    return {"documents": len(share.files), "chunks": chunks, "searches": searches}


# -- the services it breaks ----------------------------------------------------------------------
class RedisServer:
    """A private ``redis-server`` on a free port (the machine's own Redis is never touched),
    with an append-only file, so that it can be restarted with or without its data."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._answers, 30, "redis-server")

    def _answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), 1) as s,
        ):
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
        return False

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def restart(self, keep_data: bool) -> None:
        self.kill()
        if not keep_data:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.start()


class TcpProxy:
    """A TCP proxy in front of a server (PostgreSQL here) that can be cut: every open
    connection is dropped and new ones are refused until it is restored."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.cut_off = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.cut_off:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.cut_off = True
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


# -- the soak --------------------------------------------------------------------------------------
Event = tuple[str, int, Callable[[], None]]  # name, times in each round, what it does


@dataclass
class Soak:
    """Operations on the share at random intervals for ``seconds``, and every few seconds one
    of the ``events``, in rounds: each round has every event its number of times, shuffled (so
    a short soak has every kind). An event may schedule what undoes it (``after``); whatever is
    still scheduled when the time is up is done then."""

    share: ChaosShare
    seconds: float
    every_s: tuple[float, float] = (3.0, 10.0)
    events: list[Event] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self._later: list[tuple[float, Callable[[], None]]] = []
        self._round: list[Event] = []

    def _next_event(self) -> Event:
        if not self._round:
            self._round = [e for e in self.events for _ in range(e[1])]
            self.share.rng.shuffle(self._round)
        return self._round.pop()

    def after(self, low: float, high: float, act: Callable[[], None]) -> None:
        self._later.append((time.monotonic() + self.share.rng.uniform(low, high), act))

    def _due(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [(t, a) for t, a in self._later if everything or t <= now]
        self._later = [(t, a) for t, a in self._later if not (everything or t <= now)]
        for _, act in sorted(due, key=lambda x: x[0]):
            act()

    def run(self) -> None:
        rng = self.share.rng
        start = time.monotonic()
        next_event = start + rng.uniform(*self.every_s)
        reported = start
        while (now := time.monotonic()) < start + self.seconds:
            self.share.step()
            self._due()
            if now >= next_event:
                name, _, act = self._next_event()
                act()
                self.counts[name] += 1
                next_event = time.monotonic() + rng.uniform(*self.every_s)
            if now - reported >= 30:
                reported = now
                self.log(f"soak: {now - start:.0f}/{self.seconds:.0f} s, "
                         f"{sum(self.share.ops.values())} operations, {dict(self.counts)}")  # fmt: skip
            time.sleep(rng.uniform(0.0, 0.25))
        self._due(everything=True)


def soak_env(data: Path, share: Path, **settings: str) -> dict[str, str]:
    """The environment of every process of a soak: short debounce, leases and backoff. The
    deletion guard has its own tests; a soak's random deletions must not be held by it."""
    return {
        "SHAREINDEX_DATA_DIR": str(data),
        "SHAREINDEX_SHARES": json.dumps({"docs": str(share)}),
        "SHAREINDEX_API_PORT": str(free_port()),
        **QUICK_TIMINGS,
        "SHAREINDEX_MAX_DELETE_FRACTION": "1",
        **{f"SHAREINDEX_{k.upper()}": v for k, v in settings.items()},
    }


class Restartable:
    """A ``shareindex`` command that the soak kills with -9 and starts again; a process that
    ended on its own (not killed, not stopped) is a crash."""

    def __init__(self, *args: str, env: dict[str, str], ready: str) -> None:
        self.args, self.env, self.ready = args, env, ready
        self.history: list[Proc] = []
        self._ended: set[int] = set()  # ids of the processes the soak killed or stopped
        self.kills: Counter[str] = Counter()  # by what the process was doing: starting, serving

    @property
    def proc(self) -> Proc | None:
        return self.history[-1] if self.history else None

    def start(self) -> None:
        self.history.append(Proc(*self.args, env=self.env))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.alive():
            up = any(self.ready in line for line in self.proc.lines)
            self.kills["while serving" if up else "while starting"] += 1
            self._ended.add(id(self.proc))
            self.proc.kill()

    def wait_ready(self, timeout: float = 600) -> None:
        assert self.proc is not None
        self.proc.wait_for_line(self.ready, timeout)

    def restart_later(self, soak: Soak, low: float = 0.0, high: float = 3.0) -> None:
        """kill -9 now; start again in ``low`` to ``high`` s (the share keeps changing)."""
        self.kill()
        soak.after(low, high, self.ensure)

    def ensure(self) -> None:
        if not self.alive():
            self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self._ended.add(id(self.proc))
            self.proc.stop()
            self.proc.kill()  # what it left running

    def crashes(self) -> list[str]:
        """The last lines of each process that ended on its own."""
        return ["\n".join(p.lines[-30:]) for p in self.history
                if p.proc.poll() is not None and id(p) not in self._ended]  # fmt: skip

    def tail(self, lines: int = 60) -> str:
        return "\n".join(line for proc in self.history[-3:]
                         for line in [f"--- {' '.join(self.args)}", *proc.lines[-lines:]])  # fmt: skip


def _verify(env: dict[str, str]) -> dict[str, Any]:
    from tests.conftest import run_cli

    result = run_cli("verify", "--json", env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


Probe = Callable[[Api, Catalog, ChaosShare], None]


def _finish(share: ChaosShare, soak: Soak, catalog: Catalog, data: Path,
            procs: list[Restartable], settle_timeout: float, probe: Probe | None) -> dict[str, Any]:  # fmt: skip
    """Settle, then check the index through the API of the process holding it (and ``probe``:
    a test's own look while it still runs)."""
    for proc in procs:
        proc.ensure()
    settle_s = wait_settled(catalog, share, settle_timeout, soak.log)
    api = Api(data)
    checked = check_index(api, catalog, share)
    if probe is not None:
        probe(api, catalog, share)
    crashes = [c for proc in procs for c in proc.crashes()]
    assert not crashes, "processes ended on their own:\n" + "\n---\n".join(crashes)
    return {
        "seed": share.seed,
        "seconds": soak.seconds,
        "operations": sum(share.ops.values()),
        "operations_by_kind": dict(sorted(share.ops.items())),
        "events": dict(sorted(soak.counts.items())),
        "starts": {" ".join(p.args): len(p.history) for p in procs},
        "kills": {" ".join(p.args): dict(p.kills) for p in procs if p.kills},
        "settle_s": settle_s,
        **checked,
    }


def soak_embedded(tmp: Path, seed: int, seconds: float, *, start_files: int = 40,
                  settle_timeout: float = 600, log: Callable[[str], None] = print,
                  probe: Probe | None = None,
                  every_s: tuple[float, float] = (4.0, 12.0)) -> dict[str, Any]:  # fmt: skip
    """``shareindex run`` on a share changed at random, killed with -9 every ``every_s``
    seconds and started again; at the end the index must equal the share."""
    from index.catalog import SqlCatalog

    share = ChaosShare(tmp / "share", seed)
    share.root.mkdir()
    share.seed_files(start_files)
    data = tmp / "data"
    env = soak_env(data, share.root)
    service = Restartable("run", env=env, ready="reconciled")
    soak = Soak(share, seconds, every_s=every_s, log=log)
    soak.events = [("kill_service", 1, lambda: service.restart_later(soak))]
    catalog: Catalog | None = None
    try:
        service.start()
        service.wait_ready()
        soak.run()
        service.ensure()
        wait_until(lambda: (data / "catalog.db").exists(), 120, "the catalog")
        catalog = SqlCatalog(f"sqlite:///{data / 'catalog.db'}")
        report = _finish(share, soak, catalog, data, [service], settle_timeout, probe)
        report["verify"] = _verify(env)  # through the running service
        return {"mode": "embedded", **report}
    except BaseException:
        log(service.tail())
        raise
    finally:
        service.stop()
        if catalog is not None:
            catalog.close()


def soak_distributed(tmp: Path, seed: int, seconds: float, postgres_url: str, *,
                     start_files: int = 40, settle_timeout: float = 600,
                     log: Callable[[str], None] = print, probe: Probe | None = None,
                     every_s: tuple[float, float] = (3.0, 9.0)) -> dict[str, Any]:  # fmt: skip
    """``shareindex watch`` and ``shareindex worker`` on a private Redis and a PostgreSQL
    catalog reached through a proxy: workers and the watcher killed with -9, Redis restarted
    with and without its data, the catalog cut off for a few seconds, at random (an event
    every ``every_s`` seconds)."""
    from sqlalchemy.engine import make_url

    from index.catalog import SqlCatalog

    share = ChaosShare(tmp / "share", seed)
    share.root.mkdir()
    share.seed_files(start_files)
    data = tmp / "data"
    redis = RedisServer(tmp / "redis")
    redis.start()
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    env = soak_env(data, share.root, broker_url=redis.url, catalog_url=proxied,
                   worker_metrics_port=str(free_port()), reconcile_interval_s="3600")  # fmt: skip
    worker = Restartable("worker", env=env, ready=" ready.")
    watcher = Restartable("watch", env=env, ready="watching")
    soak = Soak(share, seconds, every_s=every_s, log=log)

    def cut_catalog() -> None:
        proxy.cut()
        soak.after(1.0, 5.0, proxy.restore)

    soak.events = [
        ("kill_worker", 2, lambda: worker.restart_later(soak)),
        ("kill_watcher", 1, lambda: watcher.restart_later(soak)),
        ("restart_redis_with_data", 1, lambda: redis.restart(keep_data=True)),
        ("restart_redis_without_data", 1, lambda: redis.restart(keep_data=False)),
        ("cut_catalog", 1, cut_catalog),
    ]
    catalog: Catalog | None = None
    try:
        worker.start()
        worker.wait_ready()
        watcher.start()
        watcher.wait_ready()
        soak.run()
        proxy.restore()
        catalog = SqlCatalog(postgres_url)  # the test's own view, not through the proxy
        report = _finish(share, soak, catalog, data, [worker, watcher], settle_timeout, probe)
        worker.stop()  # verify opens the index itself
        report["verify"] = _verify(env)
        return {"mode": "distributed", **report}
    except BaseException:
        log(worker.tail())
        log(watcher.tail())
        raise
    finally:
        watcher.stop()
        worker.stop()
        redis.kill()
        proxy.close()
        if catalog is not None:
            catalog.close()
