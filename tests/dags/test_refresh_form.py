"""The refresh DAG's schedule and trigger form, and the glue that reads them (no Airflow run here).

The form's JSON schema rejects what it can (unknown source, unknown strategy or chunking setting) before a
run exists; the plan task rejects the rest before any work, without retries. Runs without a data interval
(triggered from the UI, the API or the CLI) read sources whole.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import CronDataIntervalTimetable
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, ParamValidationError
from airflow.serialization.serialized_objects import DagSerialization

import groundwork.embedding
from groundwork.config import load_index
from groundwork.planning import read_plan
from groundwork.sources import TimeWindow
from groundwork_airflow import assemble_task, plan_task, run_options, run_window
from tests.conftest import REPO_ROOT, FakeEmbedder, write_docs

DAG_ID = "groundwork_refresh__forms"


@pytest.fixture
def index_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "indexes"
    folder.mkdir()
    docs = write_docs(tmp_path / "docs")
    raw = {
        "name": "forms",
        "schedule": "0 6 * * *",
        "sources": [
            {"name": "docs", "type": "files", "path": str(docs), "languages": ["eng"]},
            {"name": "notes", "type": "files", "path": str(docs), "include": ["*.txt"], "languages": ["eng"]},
        ],
        "chunking": {"strategy": "by_title", "max_characters": 400, "new_after_n_chars": 300},
        "processing": {"max_delete_share": 0.2},
        "snapshots": {"enabled": False},
        "validation": {"enabled": False},
    }
    path = folder / "forms.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("GROUNDWORK_INDEXES", str(folder))
    monkeypatch.setenv("GROUNDWORK_HOME", str(tmp_path / "home"))
    return path


@pytest.fixture
def dag(index_file: Path) -> Any:
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


@pytest.fixture
def served(dag: Any) -> Any:
    """The DAG as the API server sees it (serialized): what checks a trigger's or a backfill's conf."""
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def _module_of(dag: Any) -> str:
    """The module name the DagBag gave the DAG file."""
    for name, module in sys.modules.items():
        if getattr(module, "__file__", None) == dag.fileloc:
            return name
    raise AssertionError(f"{dag.fileloc} is not imported")


def test_schedule_is_a_data_interval_timetable(dag: Any) -> None:
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.timetable.expression == "0 6 * * *"
    refresh_schedule = sys.modules[dag.fileloc and _module_of(dag)].refresh_schedule
    assert refresh_schedule(None) is None
    assert refresh_schedule("@once") == "@once"
    assert refresh_schedule("@hourly").expression == "0 * * * *"


def test_every_form_field_has_a_title_and_a_description(dag: Any) -> None:
    fields = {
        "force", "sources", "chunking_strategy", "chunking_settings", "dry_run",
        "force_publish_reason", "force_delete_reason",
    }  # fmt: skip
    assert set(dag.params.keys()) == fields
    for name in fields:
        param = dag.params.get_param(name)
        assert param.schema.get("title") and len(param.description or "") > 20, name
    sources = dag.params.get_param("sources").schema
    assert sources["examples"] == ["docs", "notes"] and sources["items"]["enum"] == ["docs", "notes"]
    strategy = dag.params.get_param("chunking_strategy").schema
    assert strategy["enum"] == [None, "by_title", "basic", "tokens"]
    assert "the index's own (by_title)" in strategy["values_display"].values()


@pytest.mark.parametrize(
    "conf",
    [
        {},
        {"sources": ["notes"], "force": True},
        {"sources": None, "chunking_strategy": "tokens", "chunking_settings": {"max_tokens": 64}},
        {"dry_run": True, "chunking_strategy": None, "chunking_settings": None},
        {"force_delete_reason": "pruning the archive"},
    ],
)
def test_the_form_accepts_good_options(served: Any, conf: dict[str, Any]) -> None:
    served.params.deep_merge(conf).validate()


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"sources": ["nope"]}, "'nope' is not one of \\['docs', 'notes'\\]"),
        ({"sources": "docs"}, "'docs' is not of type 'array', 'null'"),
        ({"chunking_strategy": "magic"}, "'magic' is not one of \\[None, 'by_title', 'basic', 'tokens'\\]"),
        ({"chunking_settings": {"size": 3}}, "Additional properties are not allowed \\('size' was unexpected\\)"),
        ({"chunking_settings": {"max_tokens": 0}}, "0 is less than or equal to the minimum of 0"),
        ({"force": "yes"}, "'yes' is not of type 'boolean'"),
    ],
)
def test_the_form_rejects_bad_options_before_a_run_exists(served: Any, conf: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamValidationError, match=message):
        served.params.deep_merge(conf).validate()


def _context(
    run_id: str, params: dict[str, Any], interval: tuple[datetime, datetime] | None = None, run_type: str = ""
) -> dict[str, Any]:
    """What a task sees: a run triggered through the API has no logical date and no data interval."""
    now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    kind = SimpleNamespace(value=run_type or ("scheduled" if interval else "manual"))
    context: dict[str, Any] = {
        "run_id": run_id,
        "params": params,
        "dag_run": SimpleNamespace(run_type=kind, run_after=now, start_date=now),
    }
    if interval:
        context.update(logical_date=interval[0], data_interval_start=interval[0], data_interval_end=interval[1])
    return context


def test_runs_without_a_data_interval_read_whole() -> None:
    start, end = datetime(2026, 11, 24, 6, tzinfo=UTC), datetime(2026, 11, 25, 6, tzinfo=UTC)
    assert run_window(_context("m", {})) is None
    assert run_window(_context("s", {}, (start, start))) is None  # a cron timetable without intervals
    assert run_window(_context("s", {}, (start, end))) == TimeWindow(start, end)
    assert run_window(_context("b", {}, (start, end), "backfill")) == TimeWindow(start, end)
    # The UI's trigger form sends a logical date (now), so its runs get an inferred interval: still read whole.
    assert run_window(_context("m", {}, (start, end), "manual")) is None


def test_run_options_name_what_is_wrong(index_file: Path) -> None:
    cfg = load_index(index_file)
    options = run_options(cfg, {"sources": ["docs"], "chunking_strategy": "basic", "chunking_settings": {"overlap": 5}})
    assert options["sources"] == ["docs"] and options["chunking"] == {"overlap": 5, "strategy": "basic"}
    assert run_options(cfg, {"sources": None, "chunking_strategy": None})["chunking"] == {}
    from groundwork.errors import ConfigError

    with pytest.raises(ConfigError, match="has no source\\(s\\) 'nope'; it has: docs, notes"):
        run_options(cfg, {"sources": ["docs", "nope"]})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        run_options(cfg, {"chunking_settings": "max_tokens=3"})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sources": ["nope"]}, "has no source\\(s\\) 'nope'"),
        ({"chunking_strategy": "magic"}, "invalid chunking override .*strategy: Input should be"),
        ({"chunking_settings": {"overlap": 5000}}, "overlap must be smaller than max_characters"),
    ],
)
def test_the_plan_task_fails_bad_options_at_once(index_file: Path, params: dict[str, Any], message: str) -> None:
    with pytest.raises(AirflowFailException, match=message):
        plan_task(str(index_file), _context("manual__bad", params))


def test_dry_run_lists_changes_and_skips_the_rest(
    index_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(groundwork.embedding, "load_embedder", lambda *_: FakeEmbedder())
    caplog.set_level(logging.INFO, logger="groundwork_airflow")
    context = _context("manual__dry", {"dry_run": True, "chunking_strategy": "basic"})
    assert plan_task(str(index_file), context) == []
    assert "DRY RUN: 4 new, 0 changed, 0 deleted" in caplog.text
    assert "new (4):\n  docs:alpha.md\n  docs:beta.md\n  docs:gamma.txt\n  notes:gamma.txt" in caplog.text
    home = Path(str(index_file.parent.parent / "home"))
    plan = read_plan(home / "indexes" / "forms" / "runs" / "manual__dry" / "plan.json")
    assert plan.dry_run and plan.overrides == {"chunking": {"strategy": "basic"}}
    assert plan.effective_config is not None and plan.effective_config["chunking"]["strategy"] == "basic"
    with pytest.raises(AirflowSkipException, match="dry run"):
        assemble_task(str(index_file), context)
    assert not (home / "indexes" / "forms" / "versions").exists()


def test_an_empty_first_window_publishes_nothing_and_fails_nothing(
    index_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(index_file.read_text())
    raw["sources"][0]["time_partition"] = {"by": "modified"}
    raw["sources"] = raw["sources"][:1]
    index_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(groundwork.embedding, "load_embedder", lambda *_: FakeEmbedder())
    long_ago = (datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC))
    context = _context("scheduled__2020", {}, long_ago)
    assert plan_task(str(index_file), context) == []
    with pytest.raises(AirflowSkipException, match="holds no document and the index has no version yet"):
        assemble_task(str(index_file), context)
