"""What the refresh DAG file is built from: its schedule, trigger form, and one DAG per index file.

``dags/groundwork_refresh.py`` keeps only the task wiring (plan -> process -> assemble -> validate ->
evaluate -> snapshot -> publish); this module turns an index's ``schedule`` into a data-interval
timetable, describes the trigger form as Airflow Params, and turns a folder of index files into DAGs,
an invalid file into a DAG that shows its error. It imports Airflow's SDK and groundwork's config,
nothing heavier: it runs at every DAG parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, dag, task

from groundwork.config import ChunkingConfig, IndexConfig, discover_index_files, load_index
from groundwork.errors import ConfigError

__all__ = ["DEFAULT_ARGS", "build_dags", "build_invalid_dag", "invalid_dag_id", "refresh_params", "refresh_schedule"]

DEFAULT_ARGS = {"owner": "groundwork", "retries": 2, "retry_delay": timedelta(seconds=20)}
CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
STRATEGIES: list[str] = list(get_args(ChunkingConfig.model_fields["strategy"].annotation))
STRATEGY_LABELS = {
    "by_title": "by_title: sections under their titles, sizes in characters",
    "basic": "basic: fill chunks up to max_characters, ignoring titles",
    "tokens": "tokens: fixed windows of max_tokens model tokens",
}


def refresh_schedule(schedule: str | None) -> Any:
    """A cron expression or preset becomes a data-interval timetable (each run gets a window); others pass as is."""
    if schedule is None or (schedule.startswith("@") and schedule not in CRON_PRESETS):
        return schedule  # None, @once, @continuous
    return CronDataIntervalTimetable(schedule, timezone="UTC")


def refresh_params(cfg: IndexConfig) -> dict[str, Param]:
    """The trigger form. JSON-schema checks (unknown source, unknown strategy or setting) reject a bad form
    before a run is created; the plan task checks the rest (e.g. overlap vs size) before any work."""
    chunking_fields = {
        name: {k: v for k, v in schema.items() if k not in ("default", "title")}
        for name, schema in ChunkingConfig.model_json_schema()["properties"].items()
        if name != "strategy"
    }
    own = cfg.chunking
    return {
        "force": Param(False, type="boolean", title="Force re-processing",
                       description="Re-process every document this run reads, ignoring content hashes "
                       "(the embedding cache still spares texts it has seen)."),
        "sources": Param(None, type=["array", "null"], examples=cfg.source_names,
                         items={"type": "string", "enum": cfg.source_names}, uniqueItems=True,
                         title="Sources", description="Only these sources; the others are carried over "
                         "unchanged. Empty: all sources."),
        "chunking_strategy": Param(None, type=["null", "string"], enum=[None, *STRATEGIES],
                                   values_display={None: f"the index's own ({own.strategy})", **STRATEGY_LABELS},
                                   title="Chunking strategy",
                                   description="Override the index's chunking strategy for this run only (every "
                                   "document is re-chunked; all sources must be included). Recorded in the "
                                   "version's manifest; the next scheduled run goes back to the index file."),
        "chunking_settings": Param(None, type=["object", "null"], properties=chunking_fields,
                                   additionalProperties=False, title="Chunking settings",
                                   description="Override chunking settings for this run only, as JSON, e.g. "
                                   '{"max_characters": 600, "new_after_n_chars": 500} or {"max_tokens": 128}. '
                                   f"Allowed: {', '.join(chunking_fields)}."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Plan only: the plan task's log lists the documents that would be new, "
                         "changed and deleted. Nothing is built or published."),
        "force_publish_reason": Param(None, type=["null", "string"],
                                      title="Publish past a failed quality gate: reason",
                                      description="Leave empty to let the gate block. Recorded in the manifest."),
        "force_delete_reason": Param(None, type=["null", "string"], title="Delete past the circuit breaker: reason",
                                     description="Leave empty to let the breaker block a run that deletes more "
                                     f"than {cfg.processing.max_delete_share:.0%} of the documents. Recorded in "
                                     "the manifest."),
    }  # fmt: skip


def invalid_dag_id(index_file: Path) -> str:
    """``groundwork_invalid__<stem>``, with characters Airflow refuses in ids replaced by ``_``."""
    return "groundwork_invalid__" + re.sub(r"[^A-Za-z0-9_.-]", "_", index_file.stem)


def build_invalid_dag(index_file: Path, error: Exception, dag_id: str | None = None) -> DAG:
    """An index file that does not load becomes a DAG that shows and raises its error."""

    @dag(
        dag_id=dag_id or invalid_dag_id(index_file),
        schedule=None,
        start_date=datetime(2026, 1, 1),
        tags=["groundwork", "invalid"],
        doc_md=f"### Invalid index file\n\n```\n{error}\n```",
        auto_register=False,
    )
    def invalid() -> None:
        @task(retries=0)
        def report_error() -> None:
            raise ConfigError(str(error))

        report_error()

    return invalid()


def build_dags(indexes_dir: Path, build_refresh_dag: Callable[[Path, IndexConfig], DAG]) -> dict[str, DAG]:
    """One DAG per index file, keyed by dag id: a refresh DAG, or an invalid-index DAG showing why.

    A broken index file must never break the other indexes' DAGs: whatever goes wrong while loading a
    file or building its DAG (a config error, an unreadable file, a schedule Airflow rejects) becomes
    that file's ``groundwork_invalid__<stem>`` DAG. ``build_refresh_dag`` is the DAG file's task wiring.
    """
    dags: dict[str, DAG] = {}
    for file in discover_index_files(indexes_dir):
        try:
            cfg = load_index(file)
            dag_id = f"groundwork_refresh__{cfg.name}"
            if dag_id in dags:
                raise ConfigError(f"{file}: index {cfg.name!r} is already defined by another file in {indexes_dir}")
            built = build_refresh_dag(file, cfg)
            built.validate()  # what the DagBag checks before bagging (e.g. the cron expression)
        except Exception as exc:
            error = exc if isinstance(exc, ConfigError) else ConfigError(f"{file}: {type(exc).__name__}: {exc}")
            dag_id = invalid_dag_id(file)
            if dag_id in dags:  # e.g. x.yaml and x.yml
                dag_id = f"{dag_id}_{file.suffix.lstrip('.')}"
            built = build_invalid_dag(file, error, dag_id)
        dags[dag_id] = built
    return dags
