"""Distributed execution: Airflow on PostgreSQL with the CeleryExecutor on Redis and two Celery workers.

The production stack (``docker-compose.yaml``) in miniature, on this machine's own PostgreSQL and Redis:
a fresh metadata database ``gw_celery_<random>``, ``airflow db migrate``, then scheduler,
dag-processor, api-server and two ``airflow celery worker`` processes (concurrency 1 each):

- ``gw-worker-1`` serves the default queue and the embedding queue,
- ``gw-worker-2`` serves only the embedding queue (as a GPU worker would),

and the index routes its ``process`` tasks to the embedding queue (``processing.queue``). A refresh
triggered over REST maps ``process`` over >= 4 batches. The test shows, from the task instances the
REST API reports, that both workers ran ``process`` map indexes, that every other task stayed on the
default queue (so on worker 1), and that the published version is the one the embedded setup
(``groundwork.pipeline.run_index``, no Airflow) builds from the same documents: same chunk ids,
texts and payloads (but the version), same vectors within float tolerance.

Queue names carry a random token, so a Redis database shared with anything else is never crossed.
Every process group is stopped, the token's Redis keys deleted and the database dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from qdrant_client import QdrantClient

from groundwork.config import load_index
from groundwork.embedding import load_embedder
from groundwork.pipeline import run_index
from groundwork.settings import Settings
from tests.integration.airflow_harness import (
    AIRFLOW,
    REPO_ROOT,
    AirflowStandalone,
    _group_alive,
    _signal_group,
    _tail,
    airflow_env,
    free_port,
    migrate_db,
)

pytestmark = [pytest.mark.airflow, pytest.mark.model]

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_URL = "redis://127.0.0.1:6379/5"
INDEX = "celery_it"
DAG_ID = f"groundwork_refresh__{INDEX}"
WORKERS = ("gw-worker-1", "gw-worker-2")

DOCS = {
    f"{name}.md": f"# {title}\n\n{body}\n"
    for name, title, body in [
        ("bees", "Beekeeping", "Honey bees live in hives. Workers collect nectar and turn it into honey in wax combs."),
        ("volcano", "Volcanoes", "A volcano erupts when magma rises through the crust; lava and ash bury towns."),
        ("bread", "Sourdough", "Sourdough is leavened with wild yeast and lactic acid bacteria and baked very hot."),
        ("chess", "Chess openings", "The Sicilian Defence answers 1. e4 with c5; players study pawn structures."),
        ("tides", "Tides", "Tides rise and fall twice a day, pulled by the gravity of the Moon and the Sun."),
        ("orbits", "Orbits", "Satellites stay in orbit because they fall around the Earth as fast as it curves."),
        ("glaciers", "Glaciers", "Glaciers are rivers of ice that carve valleys and leave moraines when they melt."),
        ("compost", "Compost", "Compost turns kitchen scraps and leaves into humus with the help of worms and fungi."),
        ("violins", "Violins", "A violin has four strings tuned in fifths and a body of spruce and maple."),
    ]
}
BATCH_SIZE = 2  # 9 documents: 5 mapped process tasks


def _require_services() -> None:
    """PostgreSQL and Redis must answer; skipped where they do not, a failure under CI (.ci/run starts them)."""
    import psycopg
    import redis

    problems = []
    try:
        psycopg.connect(dbname="test", connect_timeout=3, **PG).close()  # type: ignore[arg-type]
    except Exception as exc:
        problems.append(f"PostgreSQL at {PG['host']}:{PG['port']}: {exc}")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        problems.append(f"Redis at {REDIS_URL}: {exc}")
    if problems:
        message = "services the Celery stack needs are not running: " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped (connections and all) afterwards."""
    import psycopg

    name = f"gw_celery_{secrets.token_hex(4)}"
    with psycopg.connect(dbname="test", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dbname="test", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class CeleryAirflow(AirflowStandalone):
    """scheduler + dag-processor + api-server + Celery workers, each in its own process group.

    Reuses the harness's REST client (token, trigger, task instances, run reports); only the
    processes differ from ``airflow standalone``.
    """

    def __init__(self, env: Mapping[str, str], log_dir: Path, workers: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(env, log_dir / "api-server.log")
        self.log_dir = log_dir
        self.workers = {name: dict(extra) for name, extra in workers.items()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = self.env["AIRFLOW__API__PORT"]
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "api-server": ([AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", port, "--workers", "1"], {}),
            "scheduler": ([AIRFLOW, "scheduler"], {}),
            "dag-processor": ([AIRFLOW, "dag-processor"], {}),
        }
        for name, extra in self.workers.items():
            argv = [AIRFLOW, "celery", "worker", "--concurrency", "1", "--celery-hostname", f"{name}@%h",
                    "--queues", extra.pop("QUEUES"), "--without-gossip"]  # fmt: skip
            commands[name] = (argv, extra)
        for name, (argv, extra) in commands.items():
            with (self.log_dir / f"{name}.log").open("ab") as log:
                self.procs[name] = subprocess.Popen(
                    argv,
                    env={**self.env, **extra},
                    cwd=self.home,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as one
                )
        self.process = self.procs["api-server"]

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs.values())

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name} ---\n{_tail(self.log_dir / f'{name}.log', chars)}" for name in self.procs)

    def wait_workers_ready(self, timeout_s: float = 120) -> None:
        """Until every Celery worker has connected to the broker and said ``ready.``."""
        deadline = time.monotonic() + timeout_s
        pending = set(self.workers)
        while pending and time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"an Airflow process exited:\n{self.logs()}")
            pending = {n for n in pending if f"{n}@" not in _tail(self.log_dir / f"{n}.log", 100_000)
                       or " ready." not in _tail(self.log_dir / f"{n}.log", 100_000)}  # fmt: skip
            time.sleep(1)
        if pending:
            raise TimeoutError(f"Celery workers not ready after {timeout_s:.0f}s: {sorted(pending)}\n{self.logs()}")

    def stop(self, timeout_s: float = 45) -> None:
        """SIGTERM every process group (workers first, so none picks up more work), then SIGKILL leftovers."""
        self._http.close()
        order = [*self.workers, "scheduler", "dag-processor", "api-server"]
        groups = {name: self.procs[name].pid for name in order if name in self.procs}
        for pgid in groups.values():
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 1))
        while any(_group_alive(g) for g in groups.values()) and time.monotonic() < deadline:
            time.sleep(0.3)
        for pgid in groups.values():
            if _group_alive(pgid):
                _signal_group(pgid, signal.SIGKILL)
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        end = time.monotonic() + 10
        while any(_group_alive(g) for g in groups.values()) and time.monotonic() < end:
            time.sleep(0.2)
        self.procs.clear()
        self.process = None


@contextmanager
def running_celery_airflow(
    env: Mapping[str, str], log_dir: Path, workers: Mapping[str, Mapping[str, str]]
) -> Iterator[CeleryAirflow]:
    airflow = CeleryAirflow(env, log_dir, workers)
    try:
        airflow.start()
        airflow.wait_ready(180)
        airflow.wait_workers_ready()
        yield airflow
    finally:
        airflow.stop()


def _delete_redis_keys(token: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{token}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _write_index(tmp_path: Path, queue: str) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(textwrap.dedent(text), encoding="utf-8")
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    index = {
        "name": INDEX,
        "schedule": None,
        "sources": [{"name": "docs", "type": "files", "path": str(docs), "languages": ["eng"]}],
        "chunking": {"strategy": "by_title", "max_characters": 400, "new_after_n_chars": 300},
        "processing": {"batch_size": BATCH_SIZE, "max_parallel": 2, "queue": queue},
        "snapshots": {"enabled": False},  # DVC is not what this test is about
    }
    file = indexes / f"{INDEX}.yaml"
    file.write_text(yaml.safe_dump(index, sort_keys=False), encoding="utf-8")
    return indexes, file


def _points(path: Path) -> dict[str, tuple[dict[str, Any], np.ndarray[Any, Any]]]:
    """Every point behind the index alias in a local-mode Qdrant folder: id -> (payload, vector)."""
    client = QdrantClient(path=str(path))
    try:
        count = client.count(INDEX, exact=True).count
        points, _ = client.scroll(INDEX, limit=count + 10, with_payload=True, with_vectors=True)
        return {str(p.id): (dict(p.payload or {}), np.asarray(p.vector, dtype=np.float32)) for p in points}
    finally:
        client.close()


def test_refresh_on_celery_workers_matches_the_embedded_build(tmp_path: Path) -> None:
    _require_services()
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        phases[name] = time.perf_counter() - started - sum(phases.values())

    token = secrets.token_hex(4)
    default_queue, embed_queue = f"gw_default_{token}", f"gw_embed_{token}"
    indexes, index_file = _write_index(tmp_path, embed_queue)
    home = tmp_path / "groundwork"
    port = free_port()
    try:
        with fresh_database() as database:
            db_url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{database}"
            env = airflow_env(
                home / "airflow",
                port,
                extra={
                    "GROUNDWORK_HOME": str(home),
                    "GROUNDWORK_INDEXES": str(indexes),
                    "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": db_url,  # psycopg 3 is async too (no asyncpg)
                    "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
                    "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
                    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
                    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": default_queue,
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.integration.celery_hostname.worker_hostname",
                },
            )
            migrate_db(env)
            lap("migrate")
            workers = {
                WORKERS[0]: {"QUEUES": f"{default_queue},{embed_queue}"},
                WORKERS[1]: {"QUEUES": embed_queue},
            }
            for name, extra in workers.items():
                extra.update({"GW_WORKER_NAME": name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())})
            with running_celery_airflow(env, tmp_path / "logs", workers) as airflow:
                lap("start")
                airflow.wait_for_dag(DAG_ID)
                airflow.unpause(DAG_ID)
                run_id = airflow.trigger(DAG_ID)
                try:
                    airflow.wait_for_run(DAG_ID, run_id, timeout_s=420)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{airflow.logs()}") from None
                tis = airflow.task_instances(DAG_ID, run_id)
                lap("run")
            lap("stop")
    finally:
        _delete_redis_keys(token)

    # -- where the tasks ran ------------------------------------------------------------------------
    process = sorted((t for t in tis if t["task_id"] == "process"), key=lambda t: t["map_index"])
    others = [t for t in tis if t["task_id"] != "process"]
    assert len(process) >= 4 and [t["map_index"] for t in process] == list(range(len(process)))
    assert {t["state"] for t in tis} == {"success"}
    assert {t["queue"] for t in process} == {embed_queue}, "process tasks go to the configured queue"
    assert {t["queue"] for t in others} == {default_queue}
    by_worker = {w: [t["map_index"] for t in process if t["hostname"] == w] for w in WORKERS}
    assert all(by_worker.values()), f"both workers ran process batches: {by_worker}"
    assert sum(map(len, by_worker.values())) == len(process)
    assert {t["hostname"] for t in others} == {WORKERS[0]}, "only worker 1 serves the default queue"

    # -- the same version as the embedded setup builds -----------------------------------------------
    cfg = load_index(index_file)
    embedded_home = tmp_path / "embedded"
    embedded = run_index(
        cfg, Settings(home=embedded_home, indexes_dir=indexes), embedder=load_embedder(cfg.embedding), run_id="embedded"
    )
    lap("embedded build")
    celery_points, embedded_points = _points(home / "qdrant"), _points(embedded_home / "qdrant")
    assert set(celery_points) == set(embedded_points) and len(celery_points) == embedded.published.points > 0
    for point_id, (payload, vector) in celery_points.items():
        other_payload, other_vector = embedded_points[point_id]
        assert {k: v for k, v in payload.items() if k != "version"} == {
            k: v for k, v in other_payload.items() if k != "version"
        }, point_id
        assert np.allclose(vector, other_vector, atol=1e-5), (point_id, float(np.abs(vector - other_vector).max()))
    assert {p["doc_id"] for p, _ in celery_points.values()} == {f"docs:{name}" for name in DOCS}

    timings = ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
    print(
        f"\nrefresh on Celery: {sum(phases.values()):.1f} s ({timings}); {len(process)} batches: "
        + ", ".join(f"{w} ran {by_worker[w]}" for w in WORKERS)
    )
