"""``make bench`` (Windows file servers): a share read over SMB from a real Samba AD DC on a
loopback address (tests/samba.py; needs root and Samba's AD DC packages, as the tests do).

- cold sync of a mixed corpus over SMB, and of the same folder as a local share: what SMB costs;
- re-sync unchanged, both ways (over SMB: a listing, and a security descriptor per file);
- freshness over SMB: a file written on the server, until it is searchable in the running
  service (the server's change notification, the debounce, parsing and embedding);
- revocation over SMB: an ACE removed with smbcacls, until the user no longer finds the file
  (a payload update: nothing embedded).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import export_model_once, machine, quantile, run_measured, write_result
from bench.corpus import write_mixed_corpus


def _sync(share: str, data: Path, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "workers.cli", "sync", "--share", f"docs={share}",
           "--data-dir", str(data), "--json"]  # fmt: skip
    run = run_measured(cmd, env=env)
    if run.returncode not in (0, 3):
        raise RuntimeError(f"sync {share} failed: {run.stderr[-2000:]}")
    summary = json.loads(run.stdout)
    return {"process_wall_s": run.wall_s, "sync_seconds": summary["seconds"],
            "peak_rss_mb": run.peak_rss_mb, "documents": summary["documents"],
            "chunks": summary["chunks"]}  # fmt: skip


def measure_live(dc: Any, work: Path, files: int) -> dict[str, Any]:
    from index.permissions.readers import Principal
    from index.search import Searcher
    from tests.helpers import free_port, running_service
    from workers.settings import load_settings

    d = dc.domain
    dc.user("alice")
    dc.mkdir("live")
    settings = load_settings(
        data_dir=work / "live-data", shares={"live": f"{dc.url}/live"}, api_port=free_port(),
        **dc.service_settings(), reconcile_interval_s=3600,
    )  # fmt: skip
    with contextlib.closing(dc.directory(cache_s=300)) as directory:
        alice = Principal("alice", sids=directory.sids_of("alice"))
    latencies, revocations = [], []
    with running_service(settings, timeout=600) as running:
        runtime = running.runtime
        searcher = Searcher(runtime.store, runtime.embedder)

        def found(word: str) -> bool:
            return bool(searcher.search(word, alice, k=1, mode="sparse"))

        # alice may read what is written in the folder from now on (inherited by new files)
        dc.acl("live", f"{d}\\alice:ALLOWED/OI|CI/READ", f"{d}\\svc:ALLOWED/OI|CI/READ",
               f"{d}\\Administrator:ALLOWED/OI|CI/FULL")  # fmt: skip
        for i in range(files):
            word = f"smbprobe{i:03d}x"
            started = time.monotonic()
            dc.put(f"live/probe{i:03d}.txt", f"Freshness probe {word} on the file server.\n")
            while not found(word):
                time.sleep(0.01)
            latencies.append(time.monotonic() - started)
        embedded_before = runtime.embedder.embedded_total
        for i in range(min(files, 5)):
            word = f"smbprobe{i:03d}x"
            started = time.monotonic()
            dc.acl(f"live/probe{i:03d}.txt", f"{d}\\svc:ALLOWED/0x0/READ")
            while found(word):
                time.sleep(0.01)
            revocations.append(time.monotonic() - started)
        embedded = runtime.embedder.embedded_total - embedded_before
    return {
        "freshness": {
            "files": files,
            "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(quantile(latencies, 0.95), 3),
            "max_s": round(max(latencies), 3),
            "note": "from the start of the smbclient put (a process of its own, about "
            "0.2 s) until searchable",
        },  # fmt: skip
        "revocation": {
            "files": len(revocations),
            "p50_s": round(statistics.median(revocations), 3),
            "max_s": round(max(revocations), 3),
            "chunks_embedded": embedded,
            "note": "from the start of smbcacls until the user no longer finds it",
        },  # fmt: skip
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--out", default="bench-results/smb.json")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("samba-tool"):
        write_result({"machine": machine(), "skipped": "needs root and Samba's AD DC packages "
                      "(make installs them when run as root)"}, args.out)  # fmt: skip
        return

    from tests.samba import start_dc, stop_dc

    export_model_once()
    work = Path(tempfile.mkdtemp(prefix="shareindex-bench-smb-"))
    dc = start_dc()
    try:
        folder = dc.share_path / "bench"
        counts = write_mixed_corpus(folder, args.docs)
        for path in [folder, *folder.rglob("*")]:  # written on the server's disk, as root
            path.chmod(0o755 if path.is_dir() else 0o644)
        env = dc.env()
        result: dict[str, Any] = {"machine": machine(), "docs": args.docs, "formats": counts}
        smb = _sync(f"{dc.url}/bench", work / "smb", env)
        local = _sync(str(folder), work / "local", env)
        result["cold"] = {"smb": smb, "local": local,
                          "smb_over_local": round(smb["process_wall_s"] / local["process_wall_s"], 3)}  # fmt: skip
        resmb = _sync(f"{dc.url}/bench", work / "smb", env)
        relocal = _sync(str(folder), work / "local", env)
        result["resync_unchanged"] = {"smb": resmb, "local": relocal}
        result.update(measure_live(dc, work, args.probes))
        write_result(result, args.out)
    finally:
        stop_dc(dc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
