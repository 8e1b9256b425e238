"""Freshness samples: seconds from a change on a share to the change being searchable."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select

from index.catalog.base import SqlBase
from index.catalog.tables import (
    FreshnessRow,
)


class FreshnessLog(SqlBase):
    """Freshness samples and their quantiles."""

    def record_freshness(self, share: str, change: str, seconds: float) -> None:
        with self.session() as s:
            row = FreshnessRow(share=share, change=change, seconds=seconds)
            s.add(row)
            s.flush()
            sample = row.id
        if sample % 500 == 0:  # keep the table bounded; status reads only the newest samples
            self.prune_freshness()

    def freshness(self, last: int = 1000) -> dict[str, Any]:
        """p50, p95 and last of the most recent samples, and the sample count."""
        with self.session() as s:
            rows = list(
                s.scalars(select(FreshnessRow).order_by(FreshnessRow.id.desc()).limit(last))
            )
        if not rows:
            return {"samples": 0, "p50_s": None, "p95_s": None, "last_s": None, "last_at": None}
        values = sorted(r.seconds for r in rows)
        return {
            "samples": len(values),
            "p50_s": round(_quantile(values, 0.5), 3),
            "p95_s": round(_quantile(values, 0.95), 3),
            "last_s": round(rows[0].seconds, 3),
            "last_at": rows[0].at.isoformat(timespec="seconds"),
        }

    def prune_freshness(self, keep: int = 10_000) -> None:
        with self.session() as s:
            newest = s.scalar(select(func.max(FreshnessRow.id)))
            if newest is not None and newest > keep:
                s.execute(delete(FreshnessRow).where(FreshnessRow.id <= newest - keep))


def _quantile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
