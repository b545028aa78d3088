"""The DAG file parses into the right DAGs: one refresh DAG per valid index, one invalid-index DAG per broken file.

No Airflow run here: only ``DagBag`` over the repository's ``dags/`` folder, with ``GROUNDWORK_INDEXES``
pointing at a temporary folder of index files. A fresh subprocess checks that parsing stays light
(no torch, unstructured, sentence-transformers or qdrant-client at parse time).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import CronDataIntervalTimetable, TriggerRule
from airflow.sdk.definitions.mappedoperator import MappedOperator
from airflow.sdk.definitions.timetables._cron import CRON_PRESETS

from tests.conftest import REPO_ROOT, write_docs

DAGS_FOLDER = REPO_ROOT / "dags"
DAG_FILE = DAGS_FOLDER / "groundwork_refresh.py"
EXAMPLE_INDEX = REPO_ROOT / "include" / "indexes" / "groundwork_docs.yaml"
HEAVY_MODULES = ("torch", "unstructured", "sentence_transformers", "qdrant_client")
TASK_ORDER = ["plan", "process", "assemble", "validate", "evaluate", "snapshot", "publish"]

# Unknown chunking strategy and a negative batch size: a config error naming both fields.
INVALID_INDEX = """\
name: broken_index
sources:
  - {name: docs, type: files, path: /nowhere}
chunking:
  strategy: magic
processing:
  batch_size: -1
"""


def _copy_example(dest: Path) -> dict[str, Any]:
    """The example index with its source paths made absolute (they are relative to include/indexes)."""
    raw = yaml.safe_load(EXAMPLE_INDEX.read_text(encoding="utf-8"))
    for source in raw["sources"]:
        source["path"] = str((EXAMPLE_INDEX.parent / source["path"]).resolve())
    dest.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return dict(raw)


@pytest.fixture
def indexes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Two valid index files and one invalid one in ``$GROUNDWORK_INDEXES``; returns the valid ones by name."""
    folder = tmp_path / "indexes"
    folder.mkdir()
    example = _copy_example(folder / "groundwork_docs.yaml")
    small = {
        "name": "small_docs",
        "description": "three small documents",
        "schedule": "30 2 * * 1-5",
        "tags": ["team_a"],
        "sources": [{"name": "docs", "type": "files", "path": str(write_docs(tmp_path / "docs"))}],
        "processing": {"batch_size": 2},
    }
    (folder / "small_docs.yaml").write_text(yaml.safe_dump(small, sort_keys=False), encoding="utf-8")
    (folder / "broken_index.yaml").write_text(INVALID_INDEX, encoding="utf-8")
    monkeypatch.setenv("GROUNDWORK_INDEXES", str(folder))
    return {"groundwork_docs": example, "small_docs": small}


def _dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.fixture
def dagbag(indexes: dict[str, dict[str, Any]]) -> DagBag:
    return _dagbag()


def _ours(bag: DagBag, prefix: str) -> set[str]:
    return {dag_id for dag_id in bag.dags if dag_id.startswith(prefix)}


def test_dags_folder_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_one_refresh_dag_per_valid_index_and_one_invalid_dag(
    dagbag: DagBag, indexes: dict[str, dict[str, Any]]
) -> None:
    assert _ours(dagbag, "groundwork_refresh__") == {f"groundwork_refresh__{name}" for name in indexes}
    assert _ours(dagbag, "groundwork_invalid__") == {"groundwork_invalid__broken_index"}


def test_invalid_index_dag_shows_the_config_error(dagbag: DagBag) -> None:
    dag = dagbag.dags["groundwork_invalid__broken_index"]
    doc = dag.doc_md or ""
    assert "broken_index.yaml" in doc
    assert "chunking.strategy" in doc and "processing.batch_size" in doc
    assert "invalid" in dag.tags
    assert dag.schedule is None
    assert [t.task_id for t in dag.tasks] == ["report_error"]


@pytest.mark.parametrize("name", ["groundwork_docs", "small_docs"])
def test_refresh_dag_shape(dagbag: DagBag, indexes: dict[str, dict[str, Any]], name: str) -> None:
    raw = indexes[name]
    dag = dagbag.dags[f"groundwork_refresh__{name}"]

    # The schedule comes from the index file, as a data-interval timetable: every scheduled or backfill run
    # has a window (a plain cron schedule has none in Airflow 3), so time-partitioned sources read only it.
    assert raw["schedule"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == CRON_PRESETS.get(raw["schedule"], raw["schedule"])
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert {"groundwork", "refresh", *raw.get("tags", [])} <= set(dag.tags)
    assert f"Index `{name}`" in (dag.doc_md or "")
    assert set(dag.params.keys()) >= {"force", "sources"}

    assert sorted(t.task_id for t in dag.tasks) == sorted(TASK_ORDER)
    for task in dag.tasks:
        assert task.retries >= 1, f"{task.task_id} has no retries"
    for upstream, downstream in itertools.pairwise(TASK_ORDER):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    assert dag.get_task("plan").upstream_task_ids == set()
    assert dag.get_task("publish").downstream_task_ids == set()

    assert isinstance(dag.get_task("process"), MappedOperator)
    assert dag.get_task("assemble").trigger_rule == TriggerRule.NONE_FAILED
    outlets = dag.get_task("publish").outlets
    assert [getattr(o, "uri", None) for o in outlets] == [f"groundwork://index/{name}"]


def test_index_without_schedule_gets_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "indexes"
    folder.mkdir()
    docs = write_docs(tmp_path / "docs")
    (folder / "manual.yaml").write_text(
        f"name: manual\nschedule: null\nsources:\n  - {{name: docs, type: files, path: {docs}}}\n", encoding="utf-8"
    )
    monkeypatch.setenv("GROUNDWORK_INDEXES", str(folder))
    bag = _dagbag()
    assert bag.import_errors == {}
    assert bag.dags["groundwork_refresh__manual"].schedule is None


def test_one_broken_file_never_hides_the_other_indexes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever is wrong with one file, the others keep their refresh DAG and the file gets an invalid DAG."""
    folder = tmp_path / "indexes"
    folder.mkdir()
    docs = write_docs(tmp_path / "docs")
    source = f"sources:\n  - {{name: docs, type: files, path: {docs}}}\n"
    (folder / "good.yaml").write_text(f"name: good\n{source}", encoding="utf-8")
    (folder / "good.yml").write_text(f"name: good\n{source}", encoding="utf-8")  # the same index twice
    (folder / "bad_cron.yaml").write_text(f"name: bad_cron\nschedule: every day\n{source}", encoding="utf-8")
    (folder / "odd name.yaml").write_text("name: [unclosed\n", encoding="utf-8")  # a stem Airflow refuses in ids
    (folder / "a_folder.yaml").mkdir()  # unreadable as a file
    monkeypatch.setenv("GROUNDWORK_INDEXES", str(folder))

    bag = _dagbag()

    assert bag.import_errors == {}
    assert _ours(bag, "groundwork_refresh__") == {"groundwork_refresh__good"}
    invalid = {dag_id: bag.dags[dag_id].doc_md or "" for dag_id in _ours(bag, "groundwork_invalid__")}
    assert set(invalid) == {
        "groundwork_invalid__good",
        "groundwork_invalid__bad_cron",
        "groundwork_invalid__odd_name",
        "groundwork_invalid__a_folder",
    }
    assert "already defined" in invalid["groundwork_invalid__good"]
    assert "bad_cron.yaml" in invalid["groundwork_invalid__bad_cron"]
    assert "not valid YAML" in invalid["groundwork_invalid__odd_name"]
    assert "IsADirectoryError" in invalid["groundwork_invalid__a_folder"]


def test_repository_indexes_parse_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROUNDWORK_INDEXES", raising=False)
    bag = _dagbag()
    assert bag.import_errors == {}
    assert _ours(bag, "groundwork_invalid__") == set()
    expected = {f"groundwork_refresh__{p.stem}" for p in (REPO_ROOT / "include" / "indexes").glob("*.y*ml")}
    assert expected and _ours(bag, "groundwork_refresh__") == expected


_PARSE_PROBE = textwrap.dedent(
    """
    import json, sys, time
    start = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    imported = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    done = time.perf_counter()
    print(json.dumps({
        "import_airflow_s": imported - start,
        "parse_s": done - imported,
        "dags": sorted(bag.dags),
        "errors": bag.import_errors,
        "heavy": sorted(m for m in sys.argv[2:] if m in sys.modules),
    }))
    """
)


def test_parsing_in_a_fresh_process_stays_light(indexes: dict[str, dict[str, Any]]) -> None:
    proc = subprocess.run(  # the environment (GROUNDWORK_INDEXES included) is inherited
        [sys.executable, "-c", _PARSE_PROBE, str(DAG_FILE), *HEAVY_MODULES],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nDAG file parse: {result['parse_s']:.2f} s (airflow import {result['import_airflow_s']:.2f} s)")
    assert result["errors"] == {}
    assert {f"groundwork_refresh__{name}" for name in indexes} <= set(result["dags"])
    assert result["heavy"] == [], f"parsing the DAG file imported {result['heavy']}"
    assert result["parse_s"] < 30
