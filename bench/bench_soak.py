"""``make bench`` (the chaos soak, issue 20 part 2): ten minutes of random operations on a share
while the processes that index it are killed and the services they need restarted or cut off
(``tests/chaos.py``; ``tests/workers/test_soak.py`` is the short version).

Half the time goes to the embedded service (``shareindex run`` killed with -9 every 4-12 s and
restarted), half to the distributed mode (the worker and the watcher killed with -9, a private
Redis restarted with and without its data, the PostgreSQL catalog cut off for 1-5 s, one event
every 3-9 s). Then the system settles, and the index must equal the share: ``verify`` clean,
every document once at its newest content, found by a search, nothing else found.

Reported per mode: the seed (``--seed`` replays the operations; their timing against the kills
depends on the machine), the operations by kind, the events, the kills by what the process was
doing, the settle time, what was checked and verify's report. The run fails (exit 1) if a check
fails; the JSON is written either way.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import export_model_once, machine, write_result
from tests.chaos import soak_distributed, soak_embedded
from tests.conftest import fresh_database


def _one(mode: str, seed: int, seconds: float) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"soak-{mode}-") as tmp:
        try:
            if mode == "embedded":
                report = soak_embedded(Path(tmp), seed, seconds)
            else:
                with contextlib.contextmanager(fresh_database)("soak") as url:
                    report = soak_distributed(Path(tmp), seed, seconds, url)
        except AssertionError as exc:  # a check failed: the finding, in the JSON
            report = {"mode": mode, "seed": seed, "seconds": seconds, "failed": str(exc)[-4000:],
                      "traceback": traceback.format_exc()[-4000:]}  # fmt: skip
    report["wall_s"] = round(time.monotonic() - started, 1)
    if "verify" in report:  # the counts; the items are empty when it is clean
        report["verify"] = {k: report["verify"][k] for k in ("clean", "drift", "checked")}
    return report


def main() -> None:
    from workers.offline import enforce_offline

    enforce_offline()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="soak time, all modes together")
    parser.add_argument("--modes", nargs="+", default=["embedded", "distributed"],
                        choices=["embedded", "distributed"])  # fmt: skip
    parser.add_argument("--seed", type=int, help="default: a new one, recorded in the JSON")
    parser.add_argument("--out", default="bench-results/soak.json")
    args = parser.parse_args()
    export_model_once()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    seconds = args.minutes * 60 / len(args.modes)
    runs = []
    for mode in args.modes:
        print(f"soak: {mode}, {seconds:.0f} s, seed {seed}", flush=True)
        runs.append(_one(mode, seed, seconds))
    result = {
        "benchmark": "chaos_soak",
        "machine": machine(),
        "seed": seed,
        "runs": runs,
        "passed": all("failed" not in r for r in runs),
    }
    write_result(result, args.out)
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
