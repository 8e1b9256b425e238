"""The layering the README's "Architecture" section states, checked on the code itself (every import, at any depth of a
module, ``TYPE_CHECKING`` blocks included):

- ``ingest`` (pure document processing) imports nothing of ``index`` or ``workers``, and neither
  Celery nor watchdog;
- ``index`` imports nothing of ``workers``, nor Celery;
- Celery is used only inside ``workers``;
- only ``workers/settings/`` reads the environment (``os.environ[...]``, ``os.environ.get``,
  ``os.getenv``); setting a variable for this process or handing the environment whole to a
  child process is not reading a setting.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "index", "workers")

FORBIDDEN = {
    "ingest": ("index", "workers", "celery", "kombu", "watchdog"),
    "index": ("workers", "celery", "kombu"),
    "workers": (),
}


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _env_reads(tree: ast.Module) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("os.getenv", "os.environ.get", "getenv", "environ.get"):
                yield node.lineno
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) in ("os.environ", "environ")
        ):
            yield node.lineno


def test_each_layer_imports_only_what_it_may() -> None:
    wrong = []
    for package, path, tree in _modules():
        for line, module in _imports(tree):
            top = module.split(".")[0]
            if top in FORBIDDEN[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_only_the_settings_read_the_environment() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}"
        for _, path, tree in _modules()
        if path.parent != ROOT / "workers" / "settings"
        for line in _env_reads(tree)
    ]
    assert not wrong, "environment read outside workers/settings/:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "finding"),
    [
        ("from index.permissions.readers import Principal\n", "imports"),
        ("def f():\n    import workers.settings\n", "imports"),
        ("import os\nx = os.environ.get('HOME')\n", "env"),
        ("import os\nx = os.environ['HOME']\n", "env"),
    ],
)
def test_the_checks_see_what_they_forbid(source: str, finding: str) -> None:
    """The rules above would fail on a violation (not an empty scan)."""
    tree = ast.parse(source)
    if finding == "imports":
        assert any(m.split(".")[0] in FORBIDDEN["ingest"] for _, m in _imports(tree))
    else:
        assert list(_env_reads(tree))
