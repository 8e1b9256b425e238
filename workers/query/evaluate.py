"""``shareindex eval``: recall@k and MRR of each retrieval mode on question / expected-document pairs."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.query.client import SearchClient
from workers.settings import ConfigError


@dataclass(frozen=True)
class Question:
    question: str
    expected: tuple[str, ...]  # paths relative to the share root, or SHARE:PATH
    user: str | None = None
    groups: tuple[str, ...] = ()
    kind: str = ""


def load_questions(path: str) -> list[Question]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Question(row["question"], tuple(row["expected"]), row.get("user"),
                                tuple(row.get("groups", ())), row.get("kind", "")))  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f'{path}:{n}: expected {{"question": ..., "expected": [...]}}: {exc}'
            ) from exc
    if not out:
        raise ConfigError(f"{path} holds no questions")
    return out


def _documents(hits: list[dict[str, Any]]) -> list[set[str]]:
    """Distinct documents in rank order, each known by its path and by SHARE:PATH."""
    seen, out = set(), []
    for hit in hits:
        meta = hit["metadata"]
        if meta["doc_id"] not in seen:
            seen.add(meta["doc_id"])
            out.append({meta["path"], f"{meta['share']}:{meta['path']}"})
    return out


def evaluate(
    client: SearchClient, questions: list[Question], k: int, modes: list[str]
) -> dict[str, Any]:
    report: dict[str, Any] = {"questions": len(questions), "k": k, "modes": {}}
    for mode in modes:
        recalls: dict[str, list[float]] = defaultdict(list)
        ranks: dict[str, list[float]] = defaultdict(list)
        for q in questions:
            docs = _documents(client.search(q.question, q.user, q.groups, k * 4, mode))[:k]
            found = [i for i, names in enumerate(docs, 1) if names & set(q.expected)]
            for key in {"all", q.kind or "all"}:
                recalls[key].append(
                    sum(1 for e in q.expected if any(e in d for d in docs)) / len(q.expected)
                )
                ranks[key].append(1 / found[0] if found else 0.0)
        report["modes"][mode] = {
            kind: {
                f"recall@{k}": round(_mean(recalls[kind]), 3),
                "mrr": round(_mean(ranks[kind]), 3),
                "n": len(recalls[kind]),
            }
            for kind in recalls
        }
    return report


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def format_evaluation(report: dict[str, Any]) -> str:
    k = report["k"]
    lines = [
        f"{report['questions']} questions, k={k}",
        f"{'mode':<8} {'subset':<18} {'recall@' + str(k):>9} {'MRR':>6}",
    ]
    for mode, kinds in report["modes"].items():
        for kind, values in sorted(kinds.items(), key=lambda kv: kv[0] != "all"):
            lines.append(
                f"{mode:<8} {kind + ' (' + str(values['n']) + ')':<18} {values[f'recall@{k}']:>9.3f} {values['mrr']:>6.3f}"
            )
    return "\n".join(lines)
