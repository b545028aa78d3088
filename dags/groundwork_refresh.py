"""
### groundwork refresh

Refreshes one groundwork index: **plan** lists every source with content hashes
and diffs them against the live version; **process** partitions, chunks,
enriches and embeds each batch of new or changed documents (one mapped task per
batch); **assemble** writes the candidate version (unchanged documents are
carried over with their vectors); **validate** runs the Great Expectations
quality gate (its Data Docs path is in the log); **evaluate** compares the
candidate with the live version on the index's golden queries (if any); **snapshot** records the
candidate in the DVC registry; **publish** uploads collection
`<index>__<version>` (rebased first if another run went live meanwhile), checks
the count, moves the alias `<index>` atomically and prunes old collections.

Tasks pass file paths, never data. Unparseable documents are skipped with
their reason (see the `plan`, `process` and `assemble` logs). One DAG is
generated per index file in `include/indexes/` (or `$GROUNDWORK_INDEXES`).

**Schedule and backfills.** The index's `schedule` becomes a data-interval
timetable: each scheduled or backfill run has a window (its data interval) and
reads only that window from time-partitioned sources (`time_partition` in the
index file); other sources are read whole. Runs triggered from the UI, the
REST API or the CLI read everything (a window is what a backfill is for).
Backfill from the **Backfill** dialog: any date range, any reprocess behaviour,
several runs at once (overlapping runs are rebased, none loses another's
changes); the result equals a full rebuild over the same data.

**Trigger form.** *Force re-processing*, *Sources* (a subset), *Chunking
strategy* and *Chunking settings* (this run only; recorded in the manifest),
*Dry run* (the `plan` log lists what would be new, changed and deleted; nothing
is built or published), and the reasons that let a run past the quality gate or
the delete circuit breaker.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Asset, TriggerRule, dag, get_current_context, task

from groundwork.config import IndexConfig
from groundwork.settings import load_settings
from groundwork_airflow import index_asset_uri
from groundwork_airflow.dag_builders import DEFAULT_ARGS, build_dags, refresh_params, refresh_schedule


def build_refresh_dag(index_file: Path, cfg: IndexConfig) -> DAG:
    path = str(index_file)

    @dag(
        dag_id=f"groundwork_refresh__{cfg.name}",
        schedule=refresh_schedule(cfg.schedule),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        # Only the DAGs build_dags keeps are bagged: one that fails validation must not be picked up anyway.
        auto_register=False,
        tags=["groundwork", "refresh", *cfg.tags],
        doc_md=f"{__doc__}\n\n**Index `{cfg.name}`**: {cfg.description}\n\nDefinition: `{path}`",
        params=refresh_params(cfg),
    )
    def refresh() -> None:
        @task
        def plan() -> list[str]:
            from groundwork_airflow import plan_task

            return plan_task(path, get_current_context())

        @task(
            execution_timeout=timedelta(hours=2),
            max_active_tis_per_dagrun=cfg.processing.max_parallel,
            # the embedding step can be routed to its own workers (e.g. a Celery queue served by GPU hosts)
            **({"queue": cfg.processing.queue} if cfg.processing.queue else {}),
        )
        def process(batch: str) -> str:
            from groundwork_airflow import process_task

            return process_task(path, batch)

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def assemble(_outputs: list[str] | None = None) -> str:
            from groundwork_airflow import assemble_task

            return assemble_task(path, get_current_context())

        @task
        def validate(version: str) -> str:
            from groundwork_airflow import validate_task

            validate_task(path, version, get_current_context())
            return version

        @task
        def evaluate(version: str) -> str:
            from groundwork_airflow import evaluate_task

            evaluate_task(path, version, get_current_context())
            return version

        @task
        def snapshot(version: str) -> str:
            from groundwork_airflow import snapshot_task

            snapshot_task(path, version, get_current_context())
            return version

        @task(outlets=[Asset(index_asset_uri(cfg.name), group="groundwork")])
        def publish(version: str) -> dict[str, object]:
            from groundwork_airflow import publish_task

            return publish_task(path, version, get_current_context())

        publish(snapshot(evaluate(validate(assemble(process.expand(batch=plan()))))))

    return refresh()


for _dag_id, _dag in build_dags(load_settings().indexes_dir, build_refresh_dag).items():
    globals()[_dag_id] = _dag
