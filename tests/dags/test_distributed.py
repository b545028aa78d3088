"""Routing and bounds for distributed executors: the process queue, and batches within Airflow's map length."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.configuration import conf
from airflow.dag_processing.dagbag import DagBag

from groundwork.config import ProcessingConfig, parse_index
from groundwork.errors import ConfigError
from groundwork.planning import plan_run, read_plan
from groundwork.settings import Settings
from groundwork.versions import VersionStore
from tests.conftest import REPO_ROOT, FakeEmbedder, write_docs


def _refresh_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processing: str) -> object:
    folder = tmp_path / "indexes"
    folder.mkdir()
    docs = write_docs(tmp_path / "docs")
    (folder / "routed.yaml").write_text(
        f"name: routed\nschedule: null\nsources:\n  - {{name: docs, type: files, path: {docs}}}\n"
        f"processing: {processing}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("GROUNDWORK_INDEXES", str(folder))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["groundwork_refresh__routed"]


def test_process_tasks_go_to_the_configured_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _refresh_dag(tmp_path, monkeypatch, "{queue: gpu-embedding, max_parallel: 3}")
    default = conf.get("operators", "default_queue")
    queues = {task.task_id: task.queue for task in dag.tasks}  # type: ignore[attr-defined]
    assert queues.pop("process") == "gpu-embedding"
    assert set(queues.values()) == {default}, "only the embedding step is routed"
    assert dag.get_task("process").max_active_tis_per_dagrun == 3  # type: ignore[attr-defined]


def test_without_a_queue_every_task_uses_the_default_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _refresh_dag(tmp_path, monkeypatch, "{batch_size: 5}")
    assert {task.queue for task in dag.tasks} == {conf.get("operators", "default_queue")}  # type: ignore[attr-defined]


def test_queue_names_are_validated(tmp_path: Path) -> None:
    raw = {"name": "x", "sources": [{"name": "d", "type": "files", "path": str(tmp_path)}]}
    with pytest.raises(ConfigError, match=r"processing\.queue"):
        parse_index({**raw, "processing": {"queue": "gpu queue; rm"}})
    assert parse_index({**raw, "processing": {"queue": "gpu.embed-1"}}).processing.queue == "gpu.embed-1"


def test_max_batches_is_bounded_by_airflows_map_length() -> None:
    limit = conf.getint("core", "max_map_length")
    bound = next(m.le for m in ProcessingConfig.model_fields["max_batches"].metadata if hasattr(m, "le"))
    assert bound == limit == 1024


def test_a_plan_never_has_more_batches_than_max_batches(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", {f"doc{i:02d}.md": f"# Doc {i}\n\nText number {i}.\n" for i in range(23)})
    cfg = parse_index({
        "name": "bounded", "sources": [{"name": "docs", "type": "files", "path": str(docs), "languages": ["eng"]}],
        "processing": {"batch_size": 1, "max_batches": 4},
    })  # fmt: skip
    store = VersionStore(Settings(home=tmp_path / "data", indexes_dir=tmp_path), cfg.name)
    plan = read_plan(plan_run(cfg, store, run_id="r1", embedder=FakeEmbedder()))
    assert len(plan.batches) == 4, "23 documents, batch_size 1, but at most 4 mapped tasks"
    sizes = [len(Path(batch).read_text().splitlines()) for batch in plan.batches]  # JSON Lines: a document a line
    assert sum(sizes) == 23 and max(sizes) == 6
