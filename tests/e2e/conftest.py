"""One real Airflow for the end-to-end tests of this folder: started once, stopped (every process) at the end.

Two indexes, one per test module, so that the modules never touch each other's state:

* ``rest_docs`` (``test_backfill_rest.py``): files partitioned by a date in their path and a CSV table
  partitioned by its ``updated_at`` column, driven through the REST API;
* ``ui_docs`` (``test_ui_browser.py``): files partitioned by modification time and an unpartitioned CSV,
  driven through the Airflow UI in headless Chromium.

Both have a daily schedule (a data-interval timetable); to keep the runs short on a small machine they take
no DVC snapshot and skip the quality gate (both have their own tests, and ``test_refresh_through_airflow.py``
runs them under Airflow). Everything else is the real thing: LocalExecutor, the real embedding model, the
embedded Qdrant folder under ``$GROUNDWORK_HOME``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from groundwork.config import IndexConfig, load_index
from groundwork.settings import Settings
from groundwork.vectorstore import alias_target, open_client, resolve_target
from groundwork.versions import VersionStore
from tests.integration.airflow_harness import (
    AirflowStandalone,
    _group_alive,
    airflow_env,
    free_port,
    migrate_db,
    running_standalone,
)

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day(offset: int) -> datetime:
    """Midnight UTC, ``offset`` days from today (negative: in the past)."""
    return TODAY + timedelta(days=offset)


@dataclass
class E2E:
    """The shared Airflow and what the tests need to look at behind it."""

    airflow: AirflowStandalone
    root: Path
    home: Path
    indexes: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(home=self.home, indexes_dir=self.indexes)

    def config(self, index: str) -> IndexConfig:
        return load_index(self.indexes / f"{index}.yaml")

    def store(self, index: str) -> VersionStore:
        return VersionStore(self.settings, index)

    def live(self, index: str) -> str | None:
        live = self.store(index).live()
        return live.version if live else None

    @contextmanager
    def qdrant(self, index: str) -> Iterator[Any]:
        """A client on the embedded Qdrant folder, holding the lock Airflow's tasks take (so never at once)."""
        target = resolve_target(self.config(index).qdrant, self.settings)
        with open_client(target, lock_timeout_s=300) as client:
            yield client

    def points(self, index: str) -> list[dict[str, Any]]:
        """Every point behind the alias ``index``: its payload, plus the collection it lives in."""
        with self.qdrant(index) as client:
            collection = alias_target(client, index)
            assert collection is not None, f"alias {index} does not exist"
            out: list[dict[str, Any]] = []
            offset = None
            while True:
                page, offset = client.scroll(index, limit=256, offset=offset, with_payload=True)
                out += [{**(p.payload or {}), "_id": str(p.id), "_collection": collection} for p in page]
                if offset is None:
                    return out

    def docs(self, index: str) -> dict[str, str]:
        """doc_id -> the text of its chunks (joined), as the live collection serves it."""
        texts: dict[str, list[str]] = {}
        for point in sorted(self.points(index), key=lambda p: (p["doc_id"], p.get("chunk_index", 0))):
            texts.setdefault(point["doc_id"], []).append(point["text"])
        return {doc: "\n".join(parts) for doc, parts in texts.items()}

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def wait_for_runs(
        self, dag_id: str, run_ids: list[str], timeout_s: float = 420, expect: str = "success"
    ) -> list[dict[str, Any]]:
        return [self.airflow.wait_for_run(dag_id, run_id, timeout_s=timeout_s, expect=expect) for run_id in run_ids]

    def create_backfill(self, body: dict[str, Any], attempts: int = 6) -> dict[str, Any]:
        """``POST /api/v2/backfills``; on SQLite a busy scheduler makes it answer 503 now and then: retry."""
        for attempt in range(attempts):
            response = self.airflow.request("POST", "/api/v2/backfills", json=body)
            if response.status_code != 503 or attempt == attempts - 1:
                break
            time.sleep(2 + 2 * attempt)
        assert response.status_code == 200, f"backfill not created: {response.status_code} {response.text}"
        return dict(response.json())

    def wait_for_backfill(self, dag_id: str, backfill_id: int, count: int, timeout_s: float = 420) -> list[dict]:
        """Until the backfill has ``count`` runs and all of them finished successfully."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = [r for r in self.runs(dag_id) if r.get("run_type") == "backfill"]
            mine = [r for r in runs if _backfill_id(r) in (backfill_id, None)]
            if len(mine) >= count and all(r["state"] in ("success", "failed") for r in mine):
                break
            time.sleep(3)
        else:
            raise AssertionError(f"backfill {backfill_id} did not finish in {timeout_s:.0f}s: {self.runs(dag_id)}")
        for run in mine:
            if run["state"] != "success":
                raise AssertionError(self.airflow.run_report(dag_id, run["dag_run_id"]))
        return mine

    def lap(self, name: str, started: float) -> None:
        self.timings[name] = round(time.perf_counter() - started, 1)


def _backfill_id(run: dict[str, Any]) -> int | None:
    value = run.get("backfill_id")
    return int(value) if value is not None else None


def _write_indexes(root: Path) -> Path:
    indexes = root / "indexes"
    indexes.mkdir()
    common: dict[str, Any] = {
        "schedule": "@daily",
        "chunking": {"strategy": "by_title", "max_characters": 600, "new_after_n_chars": 500},
        "processing": {"batch_size": 20, "max_delete_share": 0.5},
        "validation": {"enabled": False},
        "snapshots": {"enabled": False},
        "retention": {"keep": 20},
    }
    rest = {
        "name": "rest_docs",
        "description": "end-to-end index driven through the REST API",
        "sources": [
            {"name": "notes", "type": "files", "path": str(root / "rest" / "notes"), "languages": ["eng"],
             "time_partition": {"by": "path", "pattern": r"(?P<date>\d{4}-\d{2}-\d{2})/"}},
            {"name": "tickets", "type": "table", "path": str(root / "rest" / "tickets.csv"), "key": "id",
             "text": "{subject}: {body}", "title": "{subject}", "timestamp_column": "updated_at",
             "time_partition": {"by": "column"}, "language": "eng"},
        ],
        **common,
    }  # fmt: skip
    ui = {
        "name": "ui_docs",
        "description": "end-to-end index driven through the Airflow UI",
        "sources": [
            {"name": "docs", "type": "files", "path": str(root / "ui" / "docs"), "languages": ["eng"],
             "time_partition": {"by": "modified"}},
            {"name": "faq", "type": "table", "path": str(root / "ui" / "faq.csv"), "key": "q",
             "text": "{q}: {a}", "language": "eng"},
        ],
        **common,
    }  # fmt: skip
    for raw in (rest, ui):
        (indexes / f"{raw['name']}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return indexes


@pytest.fixture(scope="package")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("e2e")
    (root / "rest" / "notes").mkdir(parents=True)
    (root / "ui" / "docs").mkdir(parents=True)
    indexes = _write_indexes(root)
    home = root / "groundwork"
    env = airflow_env(
        home / "airflow",
        free_port(),
        parallelism=6,
        extra={
            "GROUNDWORK_HOME": str(home),
            "GROUNDWORK_INDEXES": str(indexes),
            # Several runs' tasks at once on a small machine: keep the scheduler from over-committing.
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "6",
        },
    )
    migrate_db(env)
    with running_standalone(env, root / "standalone.log") as airflow:
        assert airflow.process is not None
        group = airflow.process.pid
        e2e = E2E(airflow=airflow, root=root, home=home, indexes=indexes)
        e2e.lap("airflow up", started)
        yield e2e
    print(f"\ne2e Airflow timings (s): {json.dumps(e2e.timings)}")
    assert not _group_alive(group), "an Airflow process outlived the tests"
