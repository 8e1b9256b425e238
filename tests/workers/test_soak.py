"""The chaos soak, short (issue 20, part 2; ``bench/bench_soak.py`` is the ten-minute one):
random creates, edits, appends, editor saves, rapid re-saves, renames (some onto another file),
folder moves and deletions, and permission changes on a share, while

- the embedded service (``shareindex run``) is killed with -9 every few seconds and restarted;
- in the distributed mode, the worker and the watcher are killed with -9, Redis is restarted
  with and without its data, and the PostgreSQL catalog is cut off for a few seconds.

When it is over and the system has settled, the index equals the share: ``verify`` exits 0,
every document is in the index once, at its newest content, found by a search for its newest
words, and no search returns anything else (tests/chaos.py)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from index.catalog import Catalog
from tests.chaos import (
    Api,
    ChaosFile,
    ChaosShare,
    check_index,
    settled,
    soak_distributed,
    soak_embedded,
)
from tests.conftest import fresh_database

pytestmark = pytest.mark.integration

# The short soak (make bench runs the long one, bench/bench_soak.py): events closer together, so
# that every kind still comes at least once in SECONDS (the distributed mode's six-event round
# within 6 x 3.5 s; the embedded service killed at least 4 times within 4 x 6 s).
SECONDS = float(os.environ.get("SHAREINDEX_SOAK_S", "25"))
SEED = int(os.environ.get("SHAREINDEX_SOAK_SEED", "20"))


def _checks_tell(api: Api, catalog: Catalog, share: ChaosShare) -> None:
    """The checks are not vacuous: against the settled index, a model of the share one write
    behind, or with a file the share does not have, fails them."""
    rel, entry = sorted(share.files.items())[0]
    older = ChaosFile(entry.doc, [*entry.revs[:-1], f"{share.marker(entry.doc)}r0"])
    with pytest.raises(AssertionError, match=rel):
        check_index(api, catalog, replace(share, files={**share.files, rel: older}))
    ghost = replace(share, files={**share.files, "ghost.txt": ChaosFile(0, ["r0"])})
    assert not settled(catalog, ghost)


def _report(report: dict[str, object]) -> None:
    print(json.dumps(report, indent=1))  # shown with -s, or on failure
    verify = report["verify"]
    assert isinstance(verify, dict) and verify["clean"] and not verify["items"], verify
    assert verify["checked"]["files"] == report["documents"]


def test_the_embedded_service_killed_at_random_loses_nothing(tmp_path: Path) -> None:
    report = soak_embedded(tmp_path, SEED, SECONDS, probe=_checks_tell, every_s=(2.5, 6.0))
    _report(report)
    assert report["events"]["kill_service"] >= 3  # type: ignore[index]
    assert report["operations"] >= 100  # type: ignore[operator]


def test_the_distributed_mode_through_kills_redis_restarts_and_catalog_cuts(
    tmp_path: Path,
) -> None:
    with contextlib.contextmanager(fresh_database)("soak") as url:
        report = soak_distributed(
            tmp_path, SEED, SECONDS, url, probe=_checks_tell, every_s=(1.5, 3.5)
        )
    _report(report)
    events = report["events"]
    for kind in ("kill_worker", "kill_watcher", "restart_redis_with_data",
                 "restart_redis_without_data", "cut_catalog"):  # fmt: skip
        assert events.get(kind, 0) >= 1, events  # type: ignore[attr-defined]
    assert report["operations"] >= 100  # type: ignore[operator]
