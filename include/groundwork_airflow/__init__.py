"""The Airflow glue shared by groundwork's DAGs: context in, core calls out.

This is the only package besides ``dags/`` and ``plugins/`` that imports
Airflow. Each ``*_task`` function is the body of one DAG task: it turns the
Airflow context (run id, run type, logical time, params, Connections) into
arguments of one core call and returns a small JSON-able value (paths and ids,
never data). Heavy imports happen inside the functions so DAG parsing stays
fast.

It does not decide anything about documents, chunks or versions: that is the
core's job (``include/groundwork``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from groundwork.settings import REPO_ROOT, Settings, load_settings

__all__ = [
    "assemble_task",
    "index_asset_uri",
    "plan_task",
    "process_task",
    "publish_task",
    "resolve_connection",
    "runtime_settings",
    "server_connection",
]

log = logging.getLogger(__name__)


def runtime_settings() -> Settings:
    """Settings for tasks: the repository's ``data/`` unless ``GROUNDWORK_HOME`` says otherwise."""
    return load_settings(os.environ.get("GROUNDWORK_HOME") or REPO_ROOT / "data")


def index_asset_uri(index: str) -> str:
    """The Asset every publish of ``index`` updates (consumers can schedule on it)."""
    return f"groundwork://index/{index}"


def resolve_connection(conn_id: str) -> str | None:
    """A SQLAlchemy-ready URI from an Airflow Connection, or None when it does not exist."""
    conn = _connection(conn_id)
    return conn.get_uri() if conn is not None else None


def _connection(conn_id: str) -> Any:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowRuntimeError

    try:
        return Connection.get(conn_id)
    except AirflowRuntimeError:
        return None
    except Exception as exc:
        log.debug("connection %s not available: %s", conn_id, exc)
        return None


def server_connection(conn_id: str | None) -> Any:
    """A Qdrant server from an Airflow Connection (host, port, password as API key, extras)."""
    from groundwork.vectorstore import ServerConnection

    conn = _connection(conn_id) if conn_id else None
    if conn is None or not conn.host:
        return None
    extra = conn.extra_dejson or {}
    scheme = extra.get("scheme") or ("https" if extra.get("https") else "http")
    host = conn.host if "://" in conn.host else f"{scheme}://{conn.host}"
    url = f"{host}:{conn.port}" if conn.port else host
    return ServerConnection(
        url=url,
        api_key=conn.password or extra.get("api_key"),
        prefer_grpc=extra.get("prefer_grpc"),
        timeout_s=extra.get("timeout"),
    )


def _config(index_file: str) -> Any:
    from groundwork.config import load_index

    return load_index(Path(index_file))


def _trigger(context: Any) -> str:
    dag_run = context.get("dag_run")
    run_type = getattr(dag_run, "run_type", None)
    return str(getattr(run_type, "value", run_type) or "manual")


def plan_task(index_file: str, context: Any) -> list[str]:
    """Discover and diff; returns the batch files to process (one mapped task each)."""
    from groundwork.embedding import load_embedder
    from groundwork.planning import plan_run, read_plan
    from groundwork.versions import VersionStore

    cfg = _config(index_file)
    params = context.get("params") or {}
    dag_run = context["dag_run"]
    # Runs triggered from the UI, the API or the CLI have no logical date: run_after always exists.
    build_time = getattr(dag_run, "run_after", None) or context.get("logical_date")
    path = plan_run(
        cfg,
        VersionStore(runtime_settings(), cfg.name),
        run_id=context["run_id"],
        model_id=load_embedder(cfg.embedding).model_id,
        build_time=build_time,
        trigger=_trigger(context),
        sources=params.get("sources") or None,
        force=bool(params.get("force", False)),
        resolve_connection=resolve_connection,
    )
    plan = read_plan(path)
    log.info("plan %s: %s; %d batch(es)", path, plan.counts, len(plan.batches))
    for item in plan.skipped:
        log.warning("skipped %s: %s: %s", item["uri"], item["error_type"], item["message"])
    return plan.batches


def process_task(index_file: str, batch: str) -> str:
    """Partition, chunk, enrich and embed one batch; returns its chunk table's path."""
    from groundwork.embedding import load_embedder
    from groundwork.embedding_cache import EmbeddingCache
    from groundwork.processing import process_batch

    cfg = _config(index_file)
    settings = runtime_settings()
    return str(process_batch(cfg, Path(batch), load_embedder(cfg.embedding), EmbeddingCache(settings.cache_path)))


def assemble_task(index_file: str, context: Any) -> str:
    """Write the candidate version from the batch outputs; returns its version id."""
    from groundwork.assembly import assemble
    from groundwork.pipeline import summarize
    from groundwork.versions import VersionStore

    cfg = _config(index_file)
    store = VersionStore(runtime_settings(), cfg.name)
    result = assemble(cfg, store, store.run_dir(context["run_id"]) / "plan.json")
    log.info("run summary\n%s", summarize(result.manifest, result.created))
    return result.version


def publish_task(index_file: str, version: str) -> dict[str, Any]:
    """Upload the version and move the alias; returns what readers now see."""
    from groundwork.publishing import publish_version
    from groundwork.vectorstore import resolve_target
    from groundwork.versions import VersionStore

    cfg = _config(index_file)
    settings = runtime_settings()
    target = resolve_target(cfg.qdrant, settings, server_connection(cfg.qdrant.connection_id))
    result = publish_version(cfg, VersionStore(settings, cfg.name), version, target)
    log.info("live: %s (%d points, previous %s)", result.collection, result.points, result.previous)
    return {
        "version": result.version,
        "collection": result.collection,
        "points": result.points,
        "changed": result.changed,
    }
