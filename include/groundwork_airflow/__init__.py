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
    "evaluate_task",
    "rollback_task",
    "snapshot_task",
    "validate_task",
    "index_asset_uri",
    "plan_task",
    "process_task",
    "publish_task",
    "resolve_connection",
    "run_options",
    "run_window",
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
    """A Qdrant server from an Airflow Connection, or None when there is none (or it names no server).

    Fields: ``host`` (a name, or a URL with its scheme), ``port`` (REST, default 6333 on the server
    side), ``password`` = API key. Extras, as in the Qdrant provider's connection: ``url`` (instead of
    host/port), ``https`` (true: ``https://`` when host has no scheme), ``prefer_grpc``, ``grpc_port``,
    ``timeout`` (seconds), ``api_key`` (when the password is empty). Values from a URI-style
    connection arrive as strings: ``"true"``/``"false"`` and numbers are parsed, anything else is an
    error naming the connection.
    """
    from groundwork.errors import ConfigError
    from groundwork.vectorstore import ServerConnection

    conn = _connection(conn_id) if conn_id else None
    if conn is None:
        return None
    extra = conn.extra_dejson or {}
    url = extra.get("url")
    if not url:
        if not conn.host:
            return None
        scheme = extra.get("scheme") or ("https" if _flag(conn_id, extra, "https") else "http")
        host = conn.host if "://" in conn.host else f"{scheme}://{conn.host}"
        url = f"{host}:{conn.port}" if conn.port else host
    timeout = _number(conn_id, extra, "timeout")
    grpc_port = _number(conn_id, extra, "grpc_port")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"Airflow Connection {conn_id!r}: extra 'timeout' must be positive, got {timeout}")
    return ServerConnection(
        url=str(url),
        api_key=conn.password or extra.get("api_key") or None,
        prefer_grpc=_flag(conn_id, extra, "prefer_grpc"),
        timeout_s=max(1, round(timeout)) if timeout is not None else None,
        grpc_port=int(grpc_port) if grpc_port is not None else None,
    )


def _flag(conn_id: str | None, extra: dict[str, Any], key: str) -> bool | None:
    from groundwork.errors import ConfigError

    value = extra.get(key)
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off", ""}:
        return False
    raise ConfigError(f"Airflow Connection {conn_id!r}: extra {key!r} must be true or false, got {value!r}")


def _number(conn_id: str | None, extra: dict[str, Any], key: str) -> float | None:
    from groundwork.errors import ConfigError

    value = extra.get(key)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"Airflow Connection {conn_id!r}: extra {key!r} must be a number, got {value!r}") from None


def _config(index_file: str) -> Any:
    """The index's effective config: its file, or a rolled-back version's config while pinned."""
    from groundwork.config import load_index
    from groundwork.lifecycle import effective_config

    return effective_config(load_index(Path(index_file)), runtime_settings())


def _run_config(index_file: str, plan_path: Path) -> Any:
    """The config the run's plan froze (its overrides included); the index's for plans that froze none."""
    from groundwork.planning import read_plan, run_config

    return run_config(read_plan(plan_path), Path(index_file)) or _config(index_file)


def _reason(params: dict[str, Any], key: str) -> str | None:
    value = str(params.get(key) or "").strip()
    return value or None


def _trigger(context: Any) -> str:
    dag_run = context.get("dag_run")
    run_type = getattr(dag_run, "run_type", None)
    return str(getattr(run_type, "value", run_type) or "manual")


def _build_time(context: Any) -> Any:
    """When the run's version is built: a backfill run's start (its run_after is its interval's end, in the past),
    else run_after, which runs triggered from the UI, the API or the CLI have although they have no logical date."""
    dag_run = context["dag_run"]
    if _trigger(context) == "backfill" and getattr(dag_run, "start_date", None):
        return dag_run.start_date
    return getattr(dag_run, "run_after", None) or context.get("logical_date")


WINDOWED_RUN_TYPES = ("scheduled", "backfill")


def run_window(context: Any) -> Any:
    """The data interval of a scheduled or backfill run as a TimeWindow; None for every other run.

    Runs triggered from the UI, the REST API or the CLI read their sources whole: most have no data
    interval, and the one the UI's trigger form infers from its pre-filled logical date (the last
    complete interval) is not a window the operator chose. A window is asked for with a backfill.
    """
    from groundwork.sources.window import TimeWindow

    if _trigger(context) not in WINDOWED_RUN_TYPES:
        return None
    return TimeWindow.from_interval(context.get("data_interval_start"), context.get("data_interval_end"))


def run_options(cfg: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The trigger form's options, checked against the index before any work; ConfigError says what is wrong."""
    from groundwork.errors import ConfigError
    from groundwork.planning import select_sources

    sources = params.get("sources") or None
    if sources is not None and (not isinstance(sources, list) or not all(isinstance(s, str) for s in sources)):
        raise ConfigError(f"param 'sources' must be a list of source names, got {sources!r}")
    if sources:
        select_sources(cfg, sources)
    chunking: dict[str, Any] = {}
    settings = params.get("chunking_settings")
    if settings:
        if not isinstance(settings, dict):
            raise ConfigError(f"param 'chunking_settings' must be a JSON object, got {settings!r}")
        chunking.update(settings)
    strategy = params.get("chunking_strategy")
    if strategy:
        chunking["strategy"] = strategy
    return {
        "sources": sources,
        "chunking": chunking,
        "force": bool(params.get("force", False)),
        "dry_run": bool(params.get("dry_run", False)),
        "force_delete_reason": _reason(params, "force_delete_reason"),
    }


def plan_task(index_file: str, context: Any) -> list[str]:
    """Check the run's options, discover and diff; returns the batch files to process (one mapped task each).

    A bad option (unknown source, invalid chunking override, a subset where everything must be
    re-processed) or a tripped delete breaker fails the run at once, without retries: retrying cannot help.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from groundwork.embedding import load_embedder
    from groundwork.errors import ConfigError, DeleteBreakerTripped
    from groundwork.planning import plan_run, read_plan, with_overrides
    from groundwork.versions import VersionStore

    params = context.get("params") or {}
    try:
        cfg = _config(index_file)
        options = run_options(cfg, params)
        cfg = with_overrides(cfg, chunking=options["chunking"])
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    window = run_window(context)
    log.info(
        "run %s (%s): %s", context["run_id"], _trigger(context),
        f"window {window}" if window else "no window (not a scheduled or backfill run): every source is read whole",
    )  # fmt: skip
    try:
        path = plan_run(
            cfg,
            VersionStore(runtime_settings(), cfg.name),
            run_id=context["run_id"],
            embedder=load_embedder(cfg.embedding),
            build_time=_build_time(context),
            trigger=_trigger(context),
            sources=options["sources"],
            force=options["force"],
            force_delete_reason=options["force_delete_reason"],
            resolve_connection=resolve_connection,
            window=window,
            dry_run=options["dry_run"],
            overrides={"chunking": options["chunking"]} if options["chunking"] else None,
        )
    except (ConfigError, DeleteBreakerTripped) as exc:
        raise AirflowFailException(str(exc)) from None
    plan = read_plan(path)
    log.info("plan %s: %s; %d batch(es)", path, plan.counts, len(plan.batches))
    for item in plan.skipped:
        log.warning("skipped %s: %s: %s", item["uri"], item["error_type"], item["message"])
    if plan.dry_run:
        changes = plan.changes()
        log.info(
            "DRY RUN: %s new, %s changed, %s deleted, %s unchanged; nothing will be built or published",
            len(changes["new"]), len(changes["changed"]), len(changes["deleted"]), plan.counts["unchanged"],
        )  # fmt: skip
        for kind, ids in changes.items():
            log.info("%s (%d):%s", kind, len(ids), "".join(f"\n  {doc_id}" for doc_id in ids) or " none")
    return plan.batches


def process_task(index_file: str, batch: str) -> str:
    """Partition, chunk, enrich and embed one batch; returns its chunk table's path."""
    from groundwork.embedding import load_embedder
    from groundwork.embedding_cache import EmbeddingCache
    from groundwork.planning import plan_path_of_batch
    from groundwork.processing import process_batch

    cfg = _run_config(index_file, plan_path_of_batch(Path(batch)))
    settings = runtime_settings()
    return str(process_batch(cfg, Path(batch), load_embedder(cfg.embedding), EmbeddingCache(settings.cache_path)))


def _planned(index_file: str, context: Any) -> tuple[Any, Path]:
    """(the run's config, its plan's path). An index is named after its file."""
    from groundwork.versions import VersionStore

    path = VersionStore(runtime_settings(), Path(index_file).stem).run_dir(context["run_id"]) / "plan.json"
    return _run_config(index_file, path), path


def assemble_task(index_file: str, context: Any) -> str:
    """Write the candidate version from the batch outputs; returns its version id.

    Skips the rest of the run (nothing is built or published) for a dry run, and for a windowed
    run of an index without any version yet whose window holds no document.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from groundwork.assembly import assemble
    from groundwork.pipeline import summarize
    from groundwork.planning import read_plan
    from groundwork.versions import VersionStore

    cfg, plan_path = _planned(index_file, context)
    plan = read_plan(plan_path)
    if plan.dry_run:
        raise AirflowSkipException("dry run: the plan task's log lists the changes; nothing is built or published")
    if plan.parent is None and plan.window is not None and not plan.processed:
        raise AirflowSkipException(f"the window {plan.window} holds no document and the index has no version yet")
    store = VersionStore(runtime_settings(), cfg.name)
    result = assemble(cfg, store, plan_path)
    summary = summarize(result.manifest, result.created, result.skipped)
    if result.skipped and not result.created:  # the only record of this quarantine: make it stand out
        log.warning("run summary\n%s", summary)
    else:
        log.info("run summary\n%s", summary)
    return result.version


def _is_live(cfg: Any, version: str) -> bool:
    from groundwork.versions import VersionStore

    live = VersionStore(runtime_settings(), cfg.name).live()
    return live is not None and live.version == version


def validate_task(index_file: str, version: str, context: Any) -> dict[str, Any]:
    """Run the quality gate over the candidate; a failure stops the run before anything is published."""
    from groundwork.planning import read_plan
    from groundwork.validation import validate_version
    from groundwork.versions import VersionStore

    cfg, plan_path = _planned(index_file, context)
    if _is_live(cfg, version):
        log.info("version %s is already live: nothing to validate", version)
        return {"version": version, "success": True, "skipped": True}
    plan = read_plan(plan_path)
    report = validate_version(
        cfg,
        VersionStore(runtime_settings(), cfg.name),
        version,
        dimension=plan.model_dimension,
        max_tokens=plan.model_max_tokens,
        force_reason=_reason(context.get("params") or {}, "force_publish_reason"),
    )
    log.info("Data Docs: %s", report.data_docs)
    return {"version": version, "success": report.success, "forced": report.forced, "data_docs": report.data_docs}


def evaluate_task(index_file: str, version: str, context: Any) -> dict[str, Any] | None:
    """The promotion gate: golden queries on the candidate vs the live version (when the index has them)."""
    from groundwork.embedding import load_embedder
    from groundwork.evaluation import evaluate_version
    from groundwork.versions import VersionStore

    cfg = _planned(index_file, context)[0]
    if cfg.evaluation.golden is None or _is_live(cfg, version):
        log.info("no evaluation: %s", "no golden queries configured" if cfg.evaluation.golden is None else "live")
        return None
    return evaluate_version(
        cfg,
        VersionStore(runtime_settings(), cfg.name),
        version,
        load_embedder(cfg.embedding),
        force_reason=_reason(context.get("params") or {}, "force_publish_reason"),
    )


def snapshot_task(index_file: str, version: str, context: Any = None) -> dict[str, Any] | None:
    """Record the validated candidate in the DVC registry before its alias moves."""
    from groundwork.lifecycle import snapshot_version

    cfg = _planned(index_file, context)[0] if context is not None else _config(index_file)
    if _is_live(cfg, version):
        log.info("version %s is already live: its snapshot exists", version)
        return None
    return snapshot_version(cfg, runtime_settings(), version)


def publish_task(index_file: str, version: str, context: Any) -> dict[str, Any]:
    """Upload the version (rebased if another run went live meanwhile), move the alias, prune."""
    from groundwork.publishing import commit_version
    from groundwork.vectorstore import resolve_target

    cfg, plan_path = _planned(index_file, context)
    settings = runtime_settings()
    target = resolve_target(cfg.qdrant, settings, server_connection(cfg.qdrant.connection_id))
    result = commit_version(
        cfg,
        settings,
        plan_path,
        version,
        target,
        force_reason=_reason(context.get("params") or {}, "force_publish_reason"),
    )
    log.info("live: %s (%d points, previous %s)", result.collection, result.points, result.previous)
    return {
        "version": result.version,
        "collection": result.collection,
        "points": result.points,
        "changed": result.changed,
    }


def rollback_task(context: Any) -> dict[str, Any]:
    """The rollback DAG's body: move the alias back (restoring from DVC if pruned), pin, audit."""
    from groundwork.config import discover_index_files, load_index
    from groundwork.errors import NotFoundError
    from groundwork.lifecycle import rollback
    from groundwork.vectorstore import resolve_target

    params = context.get("params") or {}
    settings = runtime_settings()
    index, version = str(params.get("index") or ""), str(params.get("version") or "").strip()
    files = {p.stem: p for p in discover_index_files(settings.indexes_dir)}
    if index not in files:
        raise NotFoundError(f"no index {index!r}; configured: {', '.join(sorted(files)) or 'none'}")
    cfg = load_index(files[index])
    target = resolve_target(cfg.qdrant, settings, server_connection(cfg.qdrant.connection_id))
    result = rollback(cfg, settings, version, reason=str(params.get("reason") or ""), target=target,
                      run_id=context["run_id"])  # fmt: skip
    log.info(
        "rolled %s back from %s to %s (%s, %d points)",
        index, result.from_version, result.to_version,
        "restored from DVC" if result.restored_from_snapshot else "collection kept", result.points,
    )  # fmt: skip
    return {"index": index, "from": result.from_version, "to": result.to_version,
            "restored": result.restored_from_snapshot, "points": result.points}  # fmt: skip
