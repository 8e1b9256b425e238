"""``shareindex flower``: Flower, the Celery monitor, on the same broker, with authentication
wherever it listens beyond this machine."""

from __future__ import annotations

import os
import sys

from workers.distributed.app import NO_BROKER
from workers.settings import ConfigError, Settings


def exec_flower(settings: Settings) -> None:
    """Replace this process with Flower (the broker URL and password stay out of its argv)."""
    if not settings.broker_url:
        raise ConfigError(NO_BROKER)
    env = dict(os.environ, CELERY_BROKER_URL=settings.broker_url)
    if settings.flower_basic_auth:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    elif settings.flower_host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"Flower on {settings.flower_host} needs authentication: set "
            "SHAREINDEX_FLOWER_BASIC_AUTH=user:password (or keep flower_host 127.0.0.1)"
        )
    argv = [sys.executable, "-m", "celery", "flower", f"--address={settings.flower_host}",
            f"--port={settings.flower_port}"]  # fmt: skip
    print(f"Flower on http://{settings.flower_host}:{settings.flower_port}", flush=True)
    os.execve(sys.executable, argv, env)  # broker URL and password stay out of the argv
