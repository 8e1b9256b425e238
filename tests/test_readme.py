"""The README's downstream examples (qdrant-client and LangChain, with the ACL filter) must work."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent


def _examples() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## For downstream apps") :]
    return "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))


SERVER = 'QdrantClient(url="http://qdrant:6333")'


def test_readme_examples_run_against_an_index_of_the_demo_share(tmp_path: Path) -> None:
    """The examples for a Qdrant server run against qdrant-client's local mode (the same client
    API; an index synced with embedded_index = "qdrant-local" stands in for the server); the
    embedded-index examples against the default data dir (Qdrant Edge)."""
    share = tmp_path / "share"
    shutil.copytree(REPO / "demo/share", share)
    for path in share.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # public, whatever the checkout's umask
    for data, engine in ((".data", "edge"), (".server", "qdrant-local")):
        proc = run_cli("sync", "--share", f"demo={share}", "--data-dir", str(tmp_path / data),
                       env={"SHAREINDEX_EMBEDDED_INDEX": engine})  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    code = _examples()
    assert "acl_filter(principal)" in code and "QdrantVectorStore" in code and SERVER in code
    code = code.replace(SERVER, 'QdrantClient(path=".server/qdrant")')
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "maintenance/pump-manual.md" in lines[0]  # qdrant-client: the best hit
    assert any(
        line.startswith("maintenance/pump-manual.md [") and "'everyone'" in line for line in lines
    )  # LangChain
    assert "maintenance/pump-manual.md (embedded)" in lines  # the Edge shard, read directly
    copied = [line for line in lines if line.startswith("copied ")]
    assert copied and int(copied[0].split()[1]) > 0  # moved to the "server"


def _architecture_map() -> dict[str, str]:
    """The README's architecture map, cut into each top-level package's part."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Architecture: where each part lives") :]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "the architecture map's block"
    parts: dict[str, str] = {}
    current = None
    for line in block.group(1).splitlines():
        top = re.match(r"^(\w+)/", line)
        if top:
            current = top.group(1)
        if current:
            parts[current] = parts.get(current, "") + line + "\n"
    return parts


def test_the_architecture_map_names_every_module() -> None:
    """Every module of ingest, index and workers is named in its package's part of the map
    (its name; a module of a subpackage beside the subpackage's name)."""
    parts = _architecture_map()
    missing = []
    for package in ("ingest", "index", "workers"):
        text = parts[package]
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO / package)
            if "migrations" in rel.parts or (path.name == "__init__.py" and len(rel.parts) == 1):
                continue
            stem = rel.parent.name if path.name == "__init__.py" else path.stem
            folders = [f"{d}/" for d in rel.parts[:-1]]
            if not re.search(rf"(?<![\w.]){re.escape(stem)}\b", text) or any(
                f not in text for f in folders
            ):
                missing.append(f"{package}/{rel}")
    assert not missing, "modules the README's architecture map leaves out: " + ", ".join(missing)


def test_the_map_check_sees_a_missing_module(tmp_path: Path) -> None:
    """(The check above would fail on a module the map does not name.)"""
    parts = _architecture_map()
    assert not re.search(r"(?<![\w.])nosuchmodule\b", parts["workers"])
    assert re.search(r"(?<![\w.])planner\b", parts["workers"])
