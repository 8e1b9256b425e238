"""Dify's External Knowledge API: ``POST /retrieval``.

Dify sends its API key as the bearer token and no end user, so the key is a ShareIndex token
bound to a user or groups (one per Dify app or team): every Dify user of that app reads what that
principal may read. ``knowledge_id`` names a share, several separated by commas, or ``*``.
Scores are the dense (cosine) similarity, so that Dify's ``score_threshold`` (0-1) means what
it says. ``metadata_condition`` on ``path``, ``share`` and ``modified`` is applied; any other
name or operator is refused with a clear error, never ignored.

Errors in Dify's form: ``{"error_code": 1001, ...}`` a bad Authorization header (403), 1002
authorization failed (403), 2001 no such knowledge (404); a bad request body 400.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from index.permissions.readers import Principal
from index.search import Searcher
from workers.query.identity import Refused
from workers.query.results import Sources, result

#: the most passages a request gets, and the most candidates read to apply a condition
MAX_TOP_K = 50
MAX_CANDIDATES = 1000

_TEXT_OPS = ("contains", "not contains", "start with", "end with", "is", "is not", "in",
             "not in", "empty", "not empty")  # fmt: skip
_TIME_OPS = ("before", "after", "=", ">", "<", "≥", "≤", ">=", "<=")
FIELDS = {"path": _TEXT_OPS, "share": _TEXT_OPS, "modified": _TIME_OPS}

Predicate = Callable[[dict[str, Any]], bool]


class BadRequest(ValueError):
    """A request body Dify's contract does not allow, or a condition ShareIndex cannot apply."""


def _text(op: str, wanted: Any) -> Predicate:
    values = [str(v) for v in wanted] if isinstance(wanted, list) else [str(wanted or "")]
    value = values[0] if values else ""
    tests: dict[str, Callable[[str], bool]] = {
        "contains": lambda s: value in s, "not contains": lambda s: value not in s,
        "start with": lambda s: s.startswith(value), "end with": lambda s: s.endswith(value),
        "is": lambda s: s == value, "is not": lambda s: s != value,
        "in": lambda s: s in values, "not in": lambda s: s not in values,
        "empty": lambda s: not s, "not empty": lambda s: bool(s),
    }  # fmt: skip
    return lambda s: tests[op](str(s or ""))


def _moment(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"modified: {value!r} is not an ISO 8601 date or time") from exc
    return moment if moment.tzinfo else moment.astimezone()


def _time(op: str, wanted: Any) -> Predicate:
    at = _moment(wanted)
    tests: dict[str, Callable[[datetime], bool]] = {
        "before": lambda t: t < at, "<": lambda t: t < at, "after": lambda t: t > at,
        ">": lambda t: t > at, "=": lambda t: t == at, "≥": lambda t: t >= at,
        ">=": lambda t: t >= at, "≤": lambda t: t <= at, "<=": lambda t: t <= at,
    }  # fmt: skip
    return lambda s: bool(s) and tests[op](_moment(s))


def condition(body: Any) -> Predicate | None:
    """The metadata_condition as a test of a hit's ``{share, path, modified}`` (None: none)."""
    if body is None:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("conditions", []), list):
        raise BadRequest("metadata_condition must be {logical_operator, conditions: [...]}")
    logic = str(body.get("logical_operator") or "and").lower()
    if logic not in ("and", "or"):
        raise BadRequest(f"metadata_condition: logical_operator {logic!r} is not and / or")
    tests: list[tuple[str, Callable[[Any], bool]]] = []
    for item in body.get("conditions") or []:
        if not isinstance(item, dict):
            raise BadRequest("metadata_condition: each condition is an object")
        name, op = item.get("name"), str(item.get("comparison_operator") or "")
        if isinstance(name, list) and len(name) == 1:  # Dify's older docs: a list of names
            name = name[0]
        if name not in FIELDS:
            raise BadRequest(f"metadata_condition: {name!r} cannot be filtered on (only "
                             f"{', '.join(FIELDS)})")  # fmt: skip
        if op not in FIELDS[name]:
            raise BadRequest(f"metadata_condition: {name} does not take {op!r} (it takes "
                             f"{', '.join(FIELDS[name])})")  # fmt: skip
        make = _time if name == "modified" else _text
        tests.append((name, make(op, item.get("value"))))
    if not tests:
        return None
    combine = all if logic == "and" else any
    return lambda item: combine(test(item[name]) for name, test in tests)


def _shares(knowledge_id: Any, known: Sequence[str] | None) -> tuple[str, ...]:
    """The shares a knowledge_id names (``()``: every share); LookupError when one is unknown."""
    if not isinstance(knowledge_id, str) or not knowledge_id.strip():
        raise BadRequest("knowledge_id must name a share, several separated by commas, or *")
    if knowledge_id.strip() == "*":
        return ()
    names = tuple(n.strip() for n in knowledge_id.split(",") if n.strip())
    unknown = [n for n in names if known is not None and n not in known]
    if unknown:
        raise LookupError(f"no knowledge {', '.join(unknown)!r}: the shares are "
                          f"{', '.join(known or ()) or 'none'}")  # fmt: skip
    return names


def retrieve(searcher: Searcher, sources: Sources, principal: Principal, body: Any,
             known: Sequence[str] | None) -> dict[str, Any]:  # fmt: skip
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip() or len(query) > 4000:
        raise BadRequest("query must be a string of 1 to 4000 characters")
    shares = _shares(body.get("knowledge_id"), known)
    setting = body.get("retrieval_setting") or {}
    top_k, threshold = setting.get("top_k", 5), setting.get("score_threshold", 0.0)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise BadRequest(f"retrieval_setting.top_k must be an integer from 1 to {MAX_TOP_K}")
    if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise BadRequest("retrieval_setting.score_threshold must be a number from 0 to 1")
    keep = condition(body.get("metadata_condition"))
    want = top_k if keep is None else min(max(top_k * 8, 50), MAX_CANDIDATES)
    while True:
        hits = searcher.search(query, principal, k=want, mode="dense", shares=shares)
        items = [result(h, sources) for h in hits if h.score >= threshold]
        if keep is not None:
            items = [i for i in items if keep(i)]
        if len(items) >= top_k or len(hits) < want or want >= MAX_CANDIDATES:
            break
        want = min(want * 4, MAX_CANDIDATES)
    records = [{"content": i["content"], "score": i["score"], "title": i["title"],
                "metadata": {k: v for k, v in i.items() if k not in ("content", "score")}}
               for i in items[:top_k]]  # fmt: skip
    return {"records": records}


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "error_msg": message}, status)


def add_retrieval(app: FastAPI, searcher: Searcher, sources: Sources,
                  identify: Callable[[Request], Principal],
                  known: Callable[[], Sequence[str] | None]) -> None:  # fmt: skip
    @app.post("/retrieval", operation_id="dify_retrieval", tags=["front ends"])
    async def retrieval(request: Request) -> JSONResponse:
        """Dify's External Knowledge API (register the API's URL and a ShareIndex token bound
        to a user or groups as the API key)."""
        header = request.headers.get("authorization") or ""
        if not header.startswith("Bearer ") or not header[7:].strip():
            return _error(403, 1001, "invalid Authorization header: expected 'Bearer <API key>'")
        try:
            principal = await run_in_threadpool(identify, request)
        except Refused as refused:
            code = 1002 if refused.status in (401, 403) else refused.status
            return _error(refused.status if refused.status != 401 else 403, code, refused.detail)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, 400, "the body is not JSON")
        try:
            answer = await run_in_threadpool(retrieve, searcher, sources, principal, body,
                                             known())  # fmt: skip
        except LookupError as exc:
            return _error(404, 2001, str(exc.args[0]))
        except BadRequest as exc:
            return _error(400, 400, str(exc))
        return JSONResponse(answer)
