"""Time-partitioned sources and windowed runs: what a window lists, what it may delete, and convergence.

A run with a window (under Airflow: a scheduled or backfill run's data interval) reads only that window from
sources with ``time_partition``; documents it does not list are carried over, and deleted only where their
absence is certain. Any sequence of windowed runs (in order, overlapping, re-run) over the same data must end
where one full rebuild ends.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from groundwork.assembly import assemble
from groundwork.config import IndexConfig, SqlSourceConfig, TableSourceConfig, parse_index
from groundwork.embedding_cache import EmbeddingCache
from groundwork.errors import ConfigError, DeleteBreakerTripped, GroundworkError, SourceError
from groundwork.pipeline import run_index
from groundwork.planning import plan_path_of_batch, plan_run, read_plan, run_config, with_overrides
from groundwork.processing import process_batch
from groundwork.publishing import commit_version
from groundwork.settings import Settings
from groundwork.sources import TimeWindow, discover
from groundwork.sources import sql as sql_source
from groundwork.sources.window import as_utc
from groundwork.vectorstore import QdrantTarget
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, make_index

D1, D2, D3, D4 = (datetime(2026, 3, day, tzinfo=UTC) for day in (1, 2, 3, 4))
DAY1, DAY2, DAY3 = TimeWindow(D1, D2), TimeWindow(D2, D3), TimeWindow(D3, D4)
NOON = timedelta(hours=12)

# -- the window itself -----------------------------------------------------------------------------------


def test_window_is_half_open_utc_and_data_intervals_without_length_have_none() -> None:
    window = TimeWindow(datetime(2026, 3, 1), datetime(2026, 3, 2))  # naive: UTC
    assert window.start == D1 and window.contains(D1) and not window.contains(D2)
    assert window.contains(datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    assert window.contains(datetime.fromisoformat("2026-03-01T20:00:00-03:00"))  # 23:00 UTC
    assert not window.contains(datetime.fromisoformat("2026-03-01T22:00:00-03:00"))  # 01:00 UTC next day
    assert TimeWindow.from_dict(window.to_dict()) == window
    assert TimeWindow.from_interval(None, None) is None
    assert TimeWindow.from_interval(D1, D1) is None  # a plain cron schedule: start == end
    assert TimeWindow.from_interval(D1, D2) == window
    with pytest.raises(ValueError, match="must end after it starts"):
        TimeWindow(D2, D1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01 10:00:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01", D1),
        (date(2026, 3, 1), D1),
        (datetime(2026, 3, 1, 12, tzinfo=UTC), D1 + NOON),
        (D1.timestamp(), D1),
        ("not a time", None),
        ("", None),
        (None, None),
        (True, None),
        (float("nan"), None),
    ],
)
def test_timestamps_sources_carry_become_utc(value: Any, expected: datetime | None) -> None:
    assert as_utc(value) == expected


# -- what a window lists ---------------------------------------------------------------------------------


def _dated_tree(root: Path) -> Path:
    for day, name, text in ((1, "alpha", "Alpha gears"), (2, "beta", "Beta battery"), (3, "gamma", "Gamma report")):
        folder = root / f"2026-03-0{day}"
        folder.mkdir(parents=True)
        (folder / f"{name}.md").write_text(f"# {name}\n\n{text} of day {day}.\n")
    (root / "readme.md").write_text("# Readme\n\nUndated: read by every run.\n")
    return root


def _files(path: Path, partition: dict[str, Any] | None) -> Any:
    cfg = parse_index(
        {"name": "t", "sources": [{"name": "docs", "type": "files", "path": str(path), "time_partition": partition}]}
    )
    return cfg.sources[0]


def _ids(found: Any) -> list[str]:
    return sorted(d.doc_id for d in found.documents)


def test_files_partitioned_by_a_date_in_their_path(tmp_path: Path) -> None:
    src = _files(_dated_tree(tmp_path / "docs"), {"by": "path", "pattern": r"(?P<date>\d{4}-\d{2}-\d{2})/"})
    every = {"docs:2026-03-01/alpha.md", "docs:2026-03-02/beta.md", "docs:2026-03-03/gamma.md", "docs:readme.md"}

    day2 = discover(src, window=DAY2)
    assert day2.windowed and day2.existing == every
    assert _ids(day2) == ["docs:2026-03-02/beta.md", "docs:readme.md"]  # undated files are read every run
    assert _ids(discover(src, window=TimeWindow(D1, D4))) == sorted(every)
    assert _ids(discover(src, window=TimeWindow(D4, D4 + NOON))) == ["docs:readme.md"]
    whole = discover(src)  # no window: read whole, nothing to say about existence
    assert not whole.windowed and whole.existing is None and _ids(whole) == sorted(every)


def test_files_path_dates_with_another_format(tmp_path: Path) -> None:
    root = tmp_path / "logs" / "2026"
    root.mkdir(parents=True)
    for stamp in ("20260301T0600", "20260301T1800", "20260302T0600", "2026xx01T0000", "20261301T0000"):
        (root / f"log-{stamp}.txt").write_text(f"log written at {stamp}\n")
    src = _files(root.parent, {"by": "path", "pattern": r"log-(?P<date>\w{8}T\d{4})", "format": "%Y%m%dT%H%M"})
    assert _ids(discover(src, window=TimeWindow(D1, D1 + NOON))) == [
        "docs:2026/log-20260301T0600.txt",
        "docs:2026/log-20261301T0000.txt",  # the date found is not a date ...
        "docs:2026/log-2026xx01T0000.txt",  # ... or no date at all: read every run
    ]


def test_files_partitioned_by_modification_time(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for day, name in ((1, "alpha"), (2, "beta"), (3, "gamma")):
        path = docs / f"{name}.md"
        path.write_text(f"# {name}\n\nWritten on day {day}.\n")
        stamp = (datetime(2026, 3, day, tzinfo=UTC) + NOON).timestamp()
        os.utime(path, (stamp, stamp))
    src = _files(docs, {"by": "modified"})
    found = discover(src, window=DAY1)
    assert _ids(found) == ["docs:alpha.md"] and found.existing == {f"docs:{n}.md" for n in ("alpha", "beta", "gamma")}
    assert found.documents[0].modified_at == (D1 + NOON).isoformat()
    assert _ids(discover(src, window=TimeWindow(D2, D4))) == ["docs:beta.md", "docs:gamma.md"]


CSV = """id,body,team,updated_at
1,First ticket about login,auth,2026-03-01T09:00:00Z
2,Second ticket about billing,billing,2026-03-02T09:00:00+00:00
3,Third ticket about login,auth,2026-03-03
4,Fourth ticket with no time,auth,
5,Fifth ticket about billing,billing,2026-03-01 23:30:00
"""


def _table(tmp_path: Path, **fields: Any) -> TableSourceConfig:
    path = tmp_path / "tickets.csv"
    path.write_text(CSV)
    raw = {"name": "tickets", "type": "table", "path": str(path), "key": "id", "text": "{body}", **fields}
    cfg = parse_index({"name": "t", "sources": [raw]}).sources[0]
    assert isinstance(cfg, TableSourceConfig)
    return cfg


def test_table_rows_by_a_timestamp_column(tmp_path: Path) -> None:
    src = _table(tmp_path, timestamp_column="updated_at", time_partition={"by": "column"})
    assert src.partition_column == "updated_at"
    assert _ids(discover(src, window=DAY1)) == ["tickets:1", "tickets:5"]
    assert _ids(discover(src, window=DAY3)) == ["tickets:3"]  # a date is its midnight
    found = discover(src, window=TimeWindow(D1, D4))
    assert found.windowed and found.existing is None  # rows outside a window cannot be known without reading them
    assert _ids(found) == ["tickets:1", "tickets:2", "tickets:3", "tickets:5"]  # no time: only full runs read it
    assert _ids(discover(src)) == [f"tickets:{i}" for i in range(1, 6)]


def test_table_groups_are_read_whole_by_their_latest_row(tmp_path: Path) -> None:
    src = _table(tmp_path, group_by="team", time_partition={"by": "column", "column": "updated_at"})
    assert _ids(discover(src, window=DAY1)) == []  # auth's latest row is day 3, billing's day 2
    billing = discover(src, window=DAY2).documents
    assert [d.doc_id for d in billing] == ["tickets:billing"]
    assert billing[0].text == "Second ticket about billing\nFifth ticket about billing"  # every row of the group
    assert _ids(discover(src, window=DAY3)) == ["tickets:auth"]


def test_partition_settings_are_validated() -> None:
    def files(partition: dict[str, Any]) -> None:
        parse_index(
            {"name": "t", "sources": [{"name": "d", "type": "files", "path": "/x", "time_partition": partition}]}
        )

    with pytest.raises(ConfigError, match="by: path needs a pattern with a group named date"):
        files({"by": "path"})
    with pytest.raises(ConfigError, match="pattern must have a group named date"):
        files({"by": "path", "pattern": r"\d{4}"})
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        files({"by": "path", "pattern": "(?P<date>"})
    with pytest.raises(ConfigError, match="pattern only applies to by: path"):
        files({"by": "modified", "pattern": "(?P<date>.*)"})
    with pytest.raises(ConfigError, match=r"time_partition\.by"):
        files({"by": "column"})
    with pytest.raises(ConfigError, match="time_partition needs a column"):
        parse_index(
            {
                "name": "t",
                "sources": [{"name": "t", "type": "table", "path": "/t.csv", "key": "id", "text": "{b}",
                             "time_partition": {"by": "column"}}],
            }
        )  # fmt: skip


# -- SQL: the window goes into the query -------------------------------------------------------------------


def _sqlite(tmp_path: Path) -> str:
    path = tmp_path / "tickets.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table tickets (id integer primary key, body text, team text, updated_at text)")
        rows = [line.split(",") for line in CSV.strip().splitlines()[1:]]
        conn.executemany("insert into tickets values (?, ?, ?, nullif(?, ''))", rows)
    return f"sqlite:///{path}"


def _sql(url: str, **fields: Any) -> SqlSourceConfig:
    raw = {"name": "tickets", "type": "sql", "url": url, "query": "select * from tickets order by id;", "key": "id",
           "text": "{body}", "time_partition": {"by": "column", "column": "updated_at"}, **fields}  # fmt: skip
    cfg = parse_index({"name": "t", "sources": [raw]}).sources[0]
    assert isinstance(cfg, SqlSourceConfig)
    return cfg


def test_sql_window_is_pushed_into_the_query_and_applied_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _sql(_sqlite(tmp_path))
    seen: list[dict[str, Any]] = []
    real = sql_source.windowed_query

    def spy(*args: Any) -> Any:
        query, bounds = real(*args)
        seen.append(bounds)
        return query, bounds

    monkeypatch.setattr(sql_source, "windowed_query", spy)
    assert _ids(discover(src, window=DAY1)) == ["tickets:1", "tickets:5"]
    assert seen == [{"gw_start": "2026-02-28T00:00:00+00:00", "gw_end": "2026-03-03T00:00:00+00:00"}]
    assert _ids(discover(src, window=DAY3)) == ["tickets:3"]
    assert _ids(discover(src)) == [f"tickets:{i}" for i in range(1, 6)]
    assert len(seen) == 2  # the run without a window runs the query as written

    grouped = _sql(src.url or "", group_by="team")
    assert _ids(discover(grouped, window=DAY2)) == ["tickets:billing"]
    assert len(seen) == 2  # grouped sources are read whole: a group is never cut by the window


def test_sql_query_the_database_refuses_to_wrap_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import text

    src = _sql(_sqlite(tmp_path))
    monkeypatch.setattr(sql_source, "windowed_query", lambda *_: (text("select * from no_such_table"), {}))
    assert _ids(discover(src, window=DAY1)) == ["tickets:1", "tickets:5"]


@pytest.fixture
def pg_url() -> Iterator[tuple[str, str]]:
    psycopg = pytest.importorskip("psycopg")
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        if "CI" in os.environ:
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 (database test, user postgres) is required in CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    name = f"gw_window_{uuid.uuid4().hex[:12]}"
    try:
        conn.execute(f"create table {name} (id integer primary key, body text, day date, updated_at timestamptz)")
        conn.execute(
            f"insert into {name} values (1, 'one', '2026-03-01', '2026-03-01T23:30:00-02:00'), "
            "(2, 'two', '2026-03-02', '2026-03-02T12:00:00Z'), (3, 'three', null, null)"
        )
        yield "postgresql+psycopg://postgres@127.0.0.1:5432/test", name
    finally:
        conn.execute(f"drop table if exists {name}")
        conn.close()


def test_sql_window_on_postgres_timestamptz_and_date_columns(pg_url: tuple[str, str]) -> None:
    url, table = pg_url
    by_time = _sql(url, query=f"select * from {table}")
    assert _ids(discover(by_time, window=DAY1)) == []  # 23:30 at -02:00 is 01:30 UTC on day 2
    assert _ids(discover(by_time, window=DAY2)) == ["tickets:1", "tickets:2"]
    by_day = _sql(url, query=f"select * from {table}", time_partition={"by": "column", "column": "day"})
    assert _ids(discover(by_day, window=DAY1)) == ["tickets:1"]
    assert _ids(discover(by_day)) == ["tickets:1", "tickets:2", "tickets:3"]


# -- planning: carried over, never read as deleted ----------------------------------------------------


def _index(tmp_path: Path, **overrides: Any) -> IndexConfig:
    docs = _dated_tree(tmp_path / "docs")
    raw: dict[str, Any] = {
        "sources": [
            {"name": "docs", "type": "files", "path": str(docs), "languages": ["eng"],
             "time_partition": {"by": "path", "pattern": r"(?P<date>\d{4}-\d{2}-\d{2})/"}},
            {"name": "tickets", "type": "table", "path": str(_table(tmp_path).path), "key": "id", "text": "{body}",
             "timestamp_column": "updated_at", "time_partition": {"by": "column"}, "language": "eng"},
        ],
        "processing": {"max_delete_share": 1.0, "batch_size": 2},
        "validation": {"enabled": False},
    }  # fmt: skip
    raw.update(overrides)
    return make_index(tmp_path, **raw)


def _run(cfg: IndexConfig, settings: Settings, target: QdrantTarget, window: TimeWindow | None = None) -> Any:
    return run_index(
        cfg, settings, embedder=FakeEmbedder(), cache=EmbeddingCache(settings.cache_path), target=target, window=window
    )


def _state(settings: Settings, index: str = "demo") -> dict[str, tuple[str, dict[str, Any], Any]]:
    store = VersionStore(settings, index)
    live = store.live()
    assert live is not None
    skip = {"version", "embedding", "source_modified_at"}
    rows = pq.read_table(store.chunks_path(live.version)).to_pylist()
    return {r["chunk_id"]: (r["text"], {k: v for k, v in r.items() if k not in skip}, r["embedding"]) for r in rows}


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert sorted(a) == sorted(b)
    for cid in a:
        assert a[cid][:2] == b[cid][:2]
        np.testing.assert_allclose(a[cid][2], b[cid][2], atol=1e-6)


def _docs(settings: Settings) -> set[str]:
    return {meta["doc_id"] for _, meta, _ in _state(settings).values()}


def test_windowed_runs_carry_over_what_their_window_does_not_list(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path)
    first = _run(cfg, settings, memory_target, DAY1)
    assert _docs(settings) == {"docs:2026-03-01/alpha.md", "docs:readme.md", "tickets:1", "tickets:5"}
    assert first.manifest.window == DAY1.to_dict() and first.manifest.trigger == "manual"

    # Day 2 adds its documents; day 1's are carried over, not deleted.
    second = _run(cfg, settings, memory_target, DAY2)
    counts = second.manifest.counts["documents"]
    assert (counts["new"], counts["deleted"], counts["unchanged"]) == (2, 0, 1)  # readme is read every run
    assert _docs(settings) >= {"docs:2026-03-01/alpha.md", "tickets:1", "docs:2026-03-02/beta.md", "tickets:2"}
    plan = read_plan(VersionStore(settings, "demo").run_dir(second.manifest.run_id) / "plan.json")
    assert plan.windowed_sources == ["docs", "tickets"] and plan.counts["outside_window"] == 3


def test_a_windowed_run_deletes_only_what_is_certainly_gone(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path)
    _run(cfg, settings, memory_target)  # a full run: everything
    assert len(_docs(settings)) == 9
    docs = tmp_path / "docs"
    (docs / "2026-03-01" / "alpha.md").unlink()  # gone, dated outside the coming window: the folder says so
    (docs / "2026-03-02" / "beta.md").unlink()  # gone, dated in the window
    table = tmp_path / "tickets.csv"
    table.write_text("\n".join(line for line in CSV.splitlines() if not line.startswith(("2,", "1,"))) + "\n")

    result = _run(cfg, settings, memory_target, DAY2)
    left = _docs(settings)
    assert "docs:2026-03-01/alpha.md" not in left and "docs:2026-03-02/beta.md" not in left
    # Rows missing from a window may have moved to another one: only a run without a window deletes them.
    assert {"tickets:1", "tickets:2"} <= left
    assert result.manifest.counts["documents"]["deleted"] == 2
    _run(cfg, settings, memory_target)
    assert {"tickets:1", "tickets:2"}.isdisjoint(_docs(settings))


def test_an_emptied_partitioned_folder_is_refused_not_read_as_deleting_everything(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path, processing={"max_delete_share": 1.0})
    _run(cfg, settings, memory_target)
    for path in sorted((tmp_path / "docs").rglob("*.md")):
        path.unlink()
    with pytest.raises(SourceError, match="source 'docs' listed no documents"):
        _run(cfg, settings, memory_target, DAY2)


def test_an_empty_window_of_a_table_is_not_an_empty_source(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path)
    _run(cfg, settings, memory_target)
    quiet = TimeWindow(D4, D4 + timedelta(days=1))
    result = _run(cfg, settings, memory_target, quiet)
    assert not result.created  # readme unchanged, nothing else in the window


def _backfill(cfg: IndexConfig, settings: Settings, target: QdrantTarget, windows: list[TimeWindow]) -> None:
    """Runs planned together against the same live version (a backfill's active runs), committed one by one."""
    store = VersionStore(settings, cfg.name)
    plans = []
    for n, window in enumerate(windows):
        embedder = FakeEmbedder()
        path = plan_run(cfg, store, run_id=f"backfill_{n}", embedder=embedder, window=window, trigger="backfill")
        for batch in read_plan(path).batches:
            process_batch(cfg, Path(batch), embedder, EmbeddingCache(settings.cache_path))
        plans.append(path)
    for path in plans:
        if not read_plan(path).processed and read_plan(path).parent is None:
            continue  # an empty first window: nothing to publish
        version = assemble(cfg, store, path).version
        commit_version(cfg, settings, path, version, target)


@pytest.mark.parametrize("overlapping", [False, True])
def test_a_backfill_over_every_day_equals_a_full_rebuild(
    tmp_path: Path, memory_target: QdrantTarget, overlapping: bool
) -> None:
    cfg = _index(tmp_path)
    rebuild = Settings(home=tmp_path / "rebuild", indexes_dir=tmp_path)
    _run(cfg, rebuild, memory_target)
    expected = _state(rebuild)

    backfill = Settings(home=tmp_path / "backfill", indexes_dir=tmp_path)
    days = [TimeWindow(D1 - timedelta(days=1), D1), DAY1, DAY2, DAY3]
    if overlapping:
        _backfill(cfg, backfill, memory_target, days)
    else:
        for window in days:
            _run(cfg, backfill, memory_target, window)
    # Every dated document came in its own window; "tickets:4" has no time, so only a run without a window
    # reads it: after one, the two indexes are the same.
    assert set(_state(backfill)) < set(expected)
    assert {m["doc_id"] for _, m, _ in _state(backfill).values()} == {m["doc_id"] for _, m, _ in expected.values()} - {
        "tickets:4"
    }
    _run(cfg, backfill, memory_target)
    _same(_state(backfill), expected)

    # Re-running the whole backfill ("All Runs") after edits converges again, edits included.
    (tmp_path / "docs" / "2026-03-02" / "beta.md").write_text("# beta\n\nBeta battery, revised on day 2.\n")
    (tmp_path / "docs" / "2026-03-03" / "delta.md").write_text("# delta\n\nA late document of day 3.\n")
    _run(cfg, rebuild, memory_target)
    if overlapping:
        _backfill(cfg, backfill, memory_target, days)
    else:
        for window in days:
            _run(cfg, backfill, memory_target, window)
    _same(_state(backfill), _state(rebuild))


def test_a_config_change_ignores_the_window_and_reads_everything(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path)
    _run(cfg, settings, memory_target)
    changed = with_overrides(cfg, chunking={"strategy": "basic"})
    result = _run(changed, settings, memory_target, DAY2)
    plan = read_plan(VersionStore(settings, "demo").run_dir(result.manifest.run_id) / "plan.json")
    assert plan.window is None and plan.windowed_sources == []
    assert plan.warnings and "the window" in plan.warnings[0] and "is ignored" in plan.warnings[0]
    assert result.manifest.counts["documents"]["changed"] == 9


# -- run options: chunking override, dry run, subsets -----------------------------------------------------


def test_chunking_override_is_validated_like_the_index_file(tmp_path: Path) -> None:
    cfg = make_index(tmp_path)
    tokens = with_overrides(cfg, chunking={"strategy": "tokens", "max_tokens": 50})
    assert tokens.chunking.strategy == "tokens" and tokens.chunking.max_tokens == 50
    assert tokens.chunking.max_characters == cfg.chunking.max_characters  # the rest is the index's
    assert tokens.fingerprint() != cfg.fingerprint()
    assert with_overrides(cfg, chunking={}) is cfg
    with pytest.raises(ConfigError, match=r"invalid chunking override .*strategy: Input should be 'by_title'"):
        with_overrides(cfg, chunking={"strategy": "magic"})
    with pytest.raises(ConfigError, match="max_tokens: Input should be greater than 0"):
        with_overrides(cfg, chunking={"max_tokens": 0})
    with pytest.raises(ConfigError, match="overlap_tokens must be smaller than max_tokens"):
        with_overrides(cfg, chunking={"max_tokens": 16, "overlap_tokens": 16})
    with pytest.raises(ConfigError, match="size: Extra inputs are not permitted"):
        with_overrides(cfg, chunking={"size": 3})


def test_a_run_with_an_override_records_it_and_every_stage_uses_the_planned_config(
    tmp_path: Path, settings: Settings
) -> None:
    cfg = make_index(tmp_path, validation={"enabled": False})
    store = VersionStore(settings, "demo")
    override = {"strategy": "basic", "max_characters": 120, "new_after_n_chars": 100}
    run_cfg = with_overrides(cfg, chunking=override)
    embedder = FakeEmbedder()
    path = plan_run(run_cfg, store, run_id="r1", embedder=embedder, overrides={"chunking": override})
    plan = read_plan(path)
    frozen = run_config(plan, cfg.source_file)
    assert frozen is not None and frozen.chunking == run_cfg.chunking and frozen.fingerprint() == plan.fingerprint
    batch = Path(plan.batches[0])
    assert plan_path_of_batch(batch) == path
    process_batch(frozen, batch, embedder, None)
    result = assemble(frozen, store, path)
    manifest = store.manifest(result.version)
    assert manifest.effective_config["chunking"]["strategy"] == "basic"
    assert manifest.effective_config["chunking"]["max_characters"] == 120
    assert manifest.overrides == {"chunking": override}
    assert manifest.config_fingerprint == run_cfg.fingerprint()


def test_dry_run_lists_changes_writes_no_batch_and_is_never_assembled(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path, processing={"max_delete_share": 0.2}, validation={"enabled": False})
    _run(cfg, settings, memory_target)
    docs = tmp_path / "docs"
    (docs / "alpha.md").write_text("# Alpha\n\nRewritten.\n")
    (docs / "beta.md").unlink()
    (docs / "gamma.txt").unlink()
    (docs / "delta.md").write_text("# Delta\n\nNew.\n")
    store = VersionStore(settings, "demo")
    path = plan_run(cfg, store, run_id="dry", embedder=FakeEmbedder(), dry_run=True)
    plan = read_plan(path)
    assert plan.dry_run and plan.batches == [] and not list((path.parent / "batches").glob("*"))
    assert plan.changes() == {"new": ["docs:delta.md"], "changed": ["docs:alpha.md"],
                              "deleted": ["docs:beta.md", "docs:gamma.txt"]}  # fmt: skip
    assert any("would delete 2 of 3 documents" in w for w in plan.warnings)  # the breaker, as a warning
    with pytest.raises(GroundworkError, match="is a dry run"):
        assemble(cfg, store, path)
    with pytest.raises(DeleteBreakerTripped):  # the same run for real is blocked
        plan_run(cfg, store, run_id="real", embedder=FakeEmbedder())


def test_a_forced_subset_reprocesses_those_sources_and_keeps_the_others(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path)
    _run(cfg, settings, memory_target)
    store = VersionStore(settings, "demo")
    plan = read_plan(plan_run(cfg, store, run_id="f", embedder=FakeEmbedder(), sources=["tickets"], force=True))
    assert plan.counts["changed"] == 5 and plan.counts["new"] == 0
    assert all(d.startswith("tickets:") for d in plan.processed) and len(plan.carry_over) == 4

    # A different config needs every document re-processed: a subset is refused before anything is read.
    other = with_overrides(cfg, chunking={"strategy": "basic"})
    with pytest.raises(ConfigError, match="run it with all sources"):
        plan_run(other, store, run_id="g", embedder=FakeEmbedder(), sources=["tickets"])
    with pytest.raises(ConfigError, match="has no source\\(s\\) 'nope'; it has: docs, tickets"):
        plan_run(cfg, store, run_id="h", embedder=FakeEmbedder(), sources=["nope"])
