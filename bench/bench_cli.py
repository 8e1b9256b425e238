"""``make bench`` (cli): how fast the command line starts, as a person typing it sees it.

- ``shareindex --help``: wall time of the whole process, median of N runs (goal <= 0.3 s);
- ``shareindex search`` through the running embedded service of a small share: wall time of the
  whole process, median of N runs (goal <= 0.6 s);
- ``shareindex status`` on that data dir, for reference.

``--ref COMMIT`` measures another commit the same way in a worktree beside this one, so old and
new are measured on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, write_result

ROOT = Path(__file__).resolve().parent.parent


def _wall(args: list[str], cwd: Path, runs: int) -> dict[str, float] | str:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=cwd,
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(cwd)})  # fmt: skip
        times.append(time.perf_counter() - started)
        if done.returncode:  # (an older release refuses a newer catalog, for one)
            return f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3)}


def measure(tree: Path, data: Path, runs: int) -> dict[str, Any]:
    """Each command's wall time, run by the code in ``tree``."""
    return {
        "help": _wall(["--help"], tree, runs),
        "search_through_service": _wall(
            ["search", "cormorant inventory", "--data-dir", str(data)], tree, runs
        ),
        "status": _wall(["status", "--data-dir", str(data)], tree, runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--ref", help="also measure this commit (a worktree of it)")
    parser.add_argument("--out", default="bench-results/cli.json")
    args = parser.parse_args()
    from tests.helpers import free_port, running_service
    from workers.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        share, data = Path(tmp) / "share", Path(tmp) / "data"
        share.mkdir()
        for i in range(20):
            (share / f"n{i}.txt").write_text(f"Note {i}: the cormorant inventory lists {i} boats.\n")
        settings = load_settings(data_dir=data, shares={"s": share}, api_port=free_port(),
                                 reconcile_interval_s=3600)  # fmt: skip
        result: dict[str, Any] = {"machine": machine(), "runs": args.runs}
        with running_service(settings):
            result["current"] = measure(ROOT, data, args.runs)
            if args.ref:
                old = Path(tmp) / "ref"
                subprocess.run(["git", "worktree", "add", "--detach", str(old), args.ref],
                               cwd=ROOT, check=True, capture_output=True)  # fmt: skip
                try:
                    result["ref"] = {"commit": args.ref, **measure(old, data, args.runs)}
                finally:
                    subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT,
                                   capture_output=True)  # fmt: skip
    result["goals"] = {"help_s": 0.3, "search_through_service_s": 0.6}
    write_result(result, args.out)


if __name__ == "__main__":
    main()
