"""Shared fixtures. Real services only: PostgreSQL at 127.0.0.1:5432 (skipped locally when it is
down, a failure in CI), Qdrant in local mode, the packaged embedding model."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workers.offline import enforce_offline

enforce_offline()

PG_ADMIN_URL = os.environ.get("SHAREINDEX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

#: modules whose tests share one worker process under ``pytest -n`` (make test): one Samba DC
#: per machine (its winbindd sockets are the machine's), and the system's user database (useradd
#: locks it). Every other module runs whole in one worker (its module fixtures start once).
ONE_WORKER = {
    "samba": ("tests/workers/test_smb_e2e.py", "tests/workers/test_sources.py",
              "tests/workers/test_windows_verdict.py"),
    "system-accounts": ("tests/workers/test_acl_e2e.py", "tests/workers/test_front_ends.py"),
}  # fmt: skip


def _scope(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return next((group for group, modules in ONE_WORKER.items() if module in modules), module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduling by scope, the scopes being ONE_WORKER's groups and modules
    (its own ``loadgroup`` marks do not reach pytest 9's node ids)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The shared groups first (the longest work starts first, the rest fills in around it);
    a test of the DC or of system users outside its group is an error, not a flaky run."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        needs = "samba" if "dc" in fixtures else "system-accounts" if "accounts" in fixtures else None
        if needs and _scope(item.nodeid) != needs:
            raise pytest.UsageError(f"{item.nodeid} uses the {needs} fixtures: add its module "
                                    f"to tests/conftest.py ONE_WORKER[{needs!r}]")  # fmt: skip
    order = list(ONE_WORKER)
    items.sort(key=lambda i: order.index(_scope(i.nodeid)) if _scope(i.nodeid) in order else len(order))


@pytest.fixture(scope="session", autouse=True)
def shared_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The default embedding backend (onnx-int8 on the CPU) exports the model on first use into
    <data_dir>/models; every test has a data dir of its own, so the tests (and the commands they
    start) share one export through SHAREINDEX_MODEL_DIR instead of exporting it each time."""
    saved = os.environ.get("SHAREINDEX_MODEL_DIR")
    os.environ["SHAREINDEX_MODEL_DIR"] = str(tmp_path_factory.mktemp("models"))
    yield
    if saved is None:
        os.environ.pop("SHAREINDEX_MODEL_DIR", None)
    else:
        os.environ["SHAREINDEX_MODEL_DIR"] = saved


@pytest.fixture(scope="session")
def dc() -> Iterator[Any]:
    """A Samba Active Directory domain controller with a file share on a loopback address of
    its own (tests/samba.py), one for the whole session: every module names its users, groups,
    folders and shares uniquely."""
    import shutil

    from tests.samba import start_dc, stop_dc

    if os.geteuid() != 0 or not shutil.which("samba-tool"):
        if os.environ.get("CI"):
            pytest.fail("the Windows file server tests need root and Samba (make installs it)")
        pytest.skip("needs root and Samba's AD DC packages")
    server = start_dc()
    try:
        yield server
    finally:
        stop_dc(server)


@pytest.fixture(scope="session")
def model_path() -> str:
    from ingest.stages.model_files import resolve_model_path

    return resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def token_counter(model_path: str):
    from ingest.stages.chunk import HFTokenCounter

    return HFTokenCounter(os.path.join(model_path, "tokenizer.json"))


@pytest.fixture(scope="session")
def embedder():
    from ingest.stages.embed import SentenceEmbedder

    emb = SentenceEmbedder()
    emb.warm_up()
    return emb


def fresh_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database (its URL), dropped afterwards; fails in CI, skips elsewhere,
    when PostgreSQL is not reachable."""
    psycopg = pytest.importorskip("psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    yield from fresh_database("shareindex_test")


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    return root


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real ``shareindex`` command in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


#: limits the bad corpus is written against (tests/corpus.py)
CORPUS_ENV = {"SHAREINDEX_MAX_FILE_MB": "1", "SHAREINDEX_MAX_UNCOMPRESSED_MB": "50"}


REDIS_URL = os.environ.get("SHAREINDEX_TEST_REDIS", "redis://127.0.0.1:6379")
#: Redis databases the tests may use, one per test at a time; database 0 holds the claims
_REDIS_DBS = [n for n in range(2, 16) if n != 12]  # 12: bench_celery
_CLAIM_S = 1800


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own (emptied before and after), as the broker of one test.

    Claimed in database 0 (SET NX with an expiry), so that two test runs on one machine (a CI
    run beside a developer's) never share or flush each other's database; Celery's broadcast
    channels are per database too (fanout_prefix)."""
    import redis

    claims = redis.Redis.from_url(f"{REDIS_URL}/0", socket_connect_timeout=3)
    token = uuid.uuid4().hex
    try:
        db = next((n for n in _REDIS_DBS
                   if claims.set(f"shareindex-test:db:{n}", token, nx=True, ex=_CLAIM_S)), None)  # fmt: skip
    except redis.ConnectionError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    if db is None:
        pytest.fail(f"every test database of Redis ({_REDIS_DBS}) is claimed by another run")
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if claims.get(f"shareindex-test:db:{db}") == token.encode():
            claims.delete(f"shareindex-test:db:{db}")
        claims.close()
