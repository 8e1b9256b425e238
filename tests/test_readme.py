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
