"""
### groundwork rollback

Makes an earlier version of an index live again, **without re-embedding
anything**. Trigger it with the form: pick the index, type the version (see
`groundwork versions <index>` or the refresh runs' logs) and say why.

If the version's collection still exists, the alias moves at once. If it was
pruned, the version is restored from its DVC snapshot and its stored vectors
are uploaded into a fresh collection first. Every rollback is written to the
index's audit log, and refreshes keep the rolled-back version's config (a pin)
until an operator runs `groundwork unpin <index>` or the index file changes.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from groundwork.config import discover_index_files
from groundwork.settings import load_settings

INDEXES = sorted(p.stem for p in discover_index_files(load_settings().indexes_dir)) or ["(no index configured)"]


@dag(
    dag_id="groundwork_rollback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "groundwork", "retries": 1},
    tags=["groundwork", "rollback"],
    doc_md=__doc__,
    params={
        "index": Param(INDEXES[0], type="string", enum=INDEXES, title="Index", description="The index to roll back."),
        "version": Param("", type="string", minLength=1, pattern=r"^\d{8}T\d{6}Z-[0-9a-f]{8}$", title="Version",
                         description="The version to make live, e.g. 20261125T183000Z-3f9a1c2e."),
        "reason": Param("", type="string", minLength=1, title="Reason", description="Why (kept in the audit log)."),
    },
)  # fmt: skip
def groundwork_rollback() -> None:
    @task
    def rollback() -> dict[str, object]:
        from groundwork_airflow import rollback_task

        return rollback_task(get_current_context())

    rollback()


groundwork_rollback()
