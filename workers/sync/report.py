"""What a pass over a share did (``sync --json``), and the progress bar it drives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

_COUNTS = ("new", "changed", "unchanged", "deleted", "moved", "failed", "skipped", "superseded")


@dataclass
class SyncReport:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    moved: int = 0
    failed: int = 0
    skipped: int = 0
    #: read while the file was still changing: dropped, the newer change is processed instead
    superseded: int = 0
    embedded: int = 0
    reused: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    #: documents indexed (new or changed) by format: {"pdf": 3, "msg": 1}
    formats: Counter[str] = field(default_factory=Counter)
    #: why documents were skipped (an unsupported type names itself): {reason: count}
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    #: deletions held back (share -> {"documents", "reason"}): the share looked emptied
    held_deletions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: shares whose own permissions are unknown: share -> what is done, and what to grant
    share_warnings: dict[str, str] = field(default_factory=dict)

    def add(self, other: SyncReport) -> None:
        for name in (*_COUNTS, "embedded", "reused", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.extend(other.failures)
        self.formats.update(other.formats)
        self.skipped_reasons.update(other.skipped_reasons)
        self.held_deletions.update(other.held_deletions)
        self.share_warnings.update(other.share_warnings)

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def fail(self, share: str, path: str, status: str, reason: str) -> None:
        self.failed += 1
        self.failures.append({"share": share, "path": path, "status": status, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": {name: getattr(self, name) for name in _COUNTS},
            "chunks": {"embedded": self.embedded, "reused": self.reused},
            "seconds": round(self.seconds, 3),
            "failures": self.failures,
            "formats": dict(self.formats.most_common()),
            "skipped_by_reason": dict(self.skipped_reasons.most_common()),
            "deletions_held": self.held_deletions,
            "share_warnings": self.share_warnings,
        }


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def close(self) -> Any: ...


class NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


#: (documents to process, share name) -> a progress bar
ProgressFactory = Callable[[int, str], Progress]


def no_progress(total: int, desc: str) -> Progress:
    return NoProgress()
