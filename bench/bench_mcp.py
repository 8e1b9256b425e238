"""``make bench`` (mcp): an MCP ``search`` through the running service, as a chat front end asks
it (issue 28; goal: p50 <= 30 ms over loopback on a 6,000-chunk share).

A share of generated documents (about 6,000 chunks) is indexed by ``shareindex sync``, then
``shareindex run`` serves it; the official MCP SDK's streamable-HTTP client keeps one session
and calls the tool ``search`` with varied questions, signed in with an access token from a test
identity provider (the token check cached after the first call) and with a ShareIndex token.
``GET /search`` is measured beside it, and the first call of a new access token (its signature
checked) on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import machine, quantile, write_result

WORDS = ("pump seal valve gasket pressure flange bearing impeller motor coupling inspection "
         "maintenance schedule torque alignment vibration leak report audit safety procedure "
         "ポンプ 点検 バルブ 圧力 記録 安全 手順 報告").split()  # fmt: skip
QUESTIONS = ["how often is the pump seal replaced", "valve pressure test procedure",
             "bearing vibration limits", "flange torque for the coupling", "ポンプの点検手順",
             "safety audit findings", "impeller inspection report", "motor alignment schedule"]  # fmt: skip


def write_share(root: Path, files: int, sections: int) -> None:
    """``files`` documents of ``sections`` headed sections each (a chunk per section)."""
    import random

    rng = random.Random(28)
    for n in range(files):
        folder = root / f"dept{n % 12:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        parts = [f"# Document {n}\n"]
        for s in range(sections):
            words = " ".join(rng.choice(WORDS) for _ in range(70))
            parts.append(f"## Section {s} of document {n}\n\n{words}.\n")
        (folder / f"doc{n:05d}.md").write_text("\n".join(parts))


def _timed(calls: list[float], started: float) -> None:
    calls.append((time.perf_counter() - started) * 1000)


async def mcp_latencies(url: str, headers: dict[str, str], n: int, warm: int = 5) -> list[float]:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    out: list[float] = []
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        for i in range(n + warm):
            started = time.perf_counter()
            result = await session.call_tool("search", {"query": QUESTIONS[i % len(QUESTIONS)],
                                                        "k": 5})  # fmt: skip
            if i >= warm:  # the first calls warm the model's and the index's caches
                _timed(out, started)
            assert not result.is_error and result.structured_content["results"], result
    return out


def http_latencies(url: str, token: str, n: int) -> list[float]:
    out: list[float] = []
    for i in range(n + 5):
        query = urllib.parse.urlencode({"q": QUESTIONS[i % len(QUESTIONS)], "k": 5})
        request = urllib.request.Request(f"{url}/search?{query}",
                                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            json.load(response)
        if i >= 5:
            _timed(out, started)
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(quantile(values, 0.95), 2), "min_ms": round(min(values), 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--sections", type=int, default=12)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", default="bench-results/mcp.json")
    args = parser.parse_args()
    from index.permissions.callers import new_token
    from tests.helpers import Proc, free_port
    from tests.idp import IdentityProvider, bearer

    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        share, data = Path(tmp) / "share", Path(tmp) / "data"
        write_share(share, args.files, args.sections)
        started = time.perf_counter()
        synced = subprocess.run([sys.executable, "-m", "workers.cli", "sync", "--share",
                                 f"docs={share}", "--data-dir", str(data), "--json"],
                                capture_output=True, text=True, check=True)  # fmt: skip
        sync_s = time.perf_counter() - started
        report = json.loads(synced.stdout)
        idp = IdentityProvider()
        token, digest = new_token()
        config = Path(tmp) / "shareindex.toml"
        config.write_text(f'oidc_issuer = "{idp.issuer}"\noidc_audience = "{idp.audience}"\n'
                          "api_rate_per_s = 0\n[[api_tokens]]\n"
                          f'name = "bench"\nsha256 = "{digest}"\nuser = "root"\n')  # fmt: skip
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        service = Proc("run", "--share", f"docs={share}", "--data-dir", str(data), "--port",
                       str(port), env={"SHAREINDEX_CONFIG": str(config)})  # fmt: skip
        try:
            service.wait_for_line("reconciled", 600)
            signed_in = bearer(idp.token({"preferred_username": "root@corp.test"}, lifetime_s=3600))
            asyncio.run(mcp_latencies(f"{url}/mcp", bearer(token), 50))  # warm: caches, optimizer
            oidc, own, api = [], [], []
            for _ in range(4):  # in turns, so that neither kind gets the quieter minutes
                oidc += asyncio.run(mcp_latencies(f"{url}/mcp", signed_in, args.calls // 4))
                own += asyncio.run(mcp_latencies(f"{url}/mcp", bearer(token), args.calls // 4))
                api += http_latencies(url, token, args.calls // 4)
            first = []  # a new access token each time: the first call checks its signature
            for _ in range(20):
                fresh = bearer(idp.token({"preferred_username": "root@corp.test"}))
                first += asyncio.run(mcp_latencies(f"{url}/mcp", fresh, 1, warm=0))
        finally:
            service.stop()
            idp.close()
    chunks = report["chunks"]
    result: dict[str, Any] = {
        "benchmark": "mcp",
        "machine": machine(),
        "share": {"files": args.files, "chunks": chunks, "sync_s": round(sync_s, 1)},
        "mcp_search_signed_in": summary(oidc),
        "mcp_search_shareindex_token": summary(own),
        "get_search": summary(api),
        "mcp_search_first_call_of_a_new_token": summary(first),
        "goal": "MCP search p50 <= 30 ms",
        "met": statistics.median(oidc) <= 30.0,
    }
    write_result(result, args.out)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
