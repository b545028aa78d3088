"""Backfills and runs with options through Airflow's REST API, against a real ``airflow standalone``.

One index (``rest_docs``) with two time-partitioned sources: notes dated by their folder, tickets by their
``updated_at`` column. In order:

1. a form with an unknown source or strategy is refused by the API (400, the schema's message) before any
   run exists, for a triggered run and for a backfill alike;
2. ``POST /api/v2/backfills`` over three days, three runs at once: each run reads its own day, the runs
   overlap and rebase onto each other, and the index ends up holding every day's documents;
3. a run triggered with params (a dry run with a chunking override) plans, lists and publishes nothing;
4. a run triggered from the CLI (no logical date, no data interval) reads everything and finds nothing
   to do: the backfill already equals a full rebuild, which step 5 checks point by point against a full
   rebuild of the same data in this process.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from itertools import combinations
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from groundwork.embedding import load_embedder
from groundwork.pipeline import run_index
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget
from tests.e2e.conftest import E2E, day
from tests.integration.airflow_harness import AIRFLOW, readable_log

pytestmark = [pytest.mark.airflow, pytest.mark.model]

INDEX = "rest_docs"
DAG_ID = f"groundwork_refresh__{INDEX}"
DAYS = [day(-7), day(-6), day(-5)]
READ_WHOLE = "no window (not a scheduled or backfill run): every source is read whole"
NOTES = {
    0: ("beekeeping.md", "# Beekeeping\n\nWorker bees collect nectar and turn it into honey in wax combs."),
    1: ("volcanoes.md", "# Volcanoes\n\nA volcano erupts when magma rises through the crust; lava and ash follow."),
    2: ("sourdough.md", "# Sourdough\n\nSourdough bread rises with wild yeast and ferments slowly overnight."),
}
TICKETS = [
    ("1", "Login fails", "Users cannot log in after the password reset.", 0),
    ("2", "Invoice totals", "The invoice total ignores the discount line.", 1),
    ("3", "Slow search", "Search takes ten seconds on large workspaces.", 2),
]


def _write_sources(e2e: E2E) -> None:
    root = e2e.root / "rest"
    for n, (name, text) in NOTES.items():
        folder = root / "notes" / DAYS[n].strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text) + "\n", encoding="utf-8")
    lines = ["id,subject,body,updated_at"]
    lines += [f"{i},{s},{b},{(DAYS[d].replace(hour=10 + d)).isoformat()}" for i, s, b, d in TICKETS]
    (root / "tickets.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _expected_docs() -> set[str]:
    notes = {f"notes:{DAYS[n].strftime('%Y-%m-%d')}/{name}" for n, (name, _) in NOTES.items()}
    return notes | {f"tickets:{i}" for i, *_ in TICKETS}


def _states(e2e: E2E, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in e2e.airflow.task_instances(DAG_ID, run_id)}


def _rejected(response: Any, *needles: str) -> None:
    assert response.status_code in (400, 422), (response.status_code, response.text)
    for needle in needles:
        assert needle in response.text, response.text


def test_rest_backfill_and_runs_with_params(e2e: E2E, tmp_path: Any) -> None:
    af = e2e.airflow
    _write_sources(e2e)
    started = time.perf_counter()
    af.wait_for_dag(DAG_ID)

    # 1. Bad options never become a run.
    post_run = f"/api/v2/dags/{DAG_ID}/dagRuns"
    _rejected(af.request("POST", post_run, json={"logical_date": None, "conf": {"sources": ["nope"]}}),
              "'nope' is not one of ['notes', 'tickets']")  # fmt: skip
    _rejected(af.request("POST", post_run, json={"logical_date": None, "conf": {"chunking_strategy": "magic"}}),
              "'magic' is not one of")  # fmt: skip
    _rejected(af.request("POST", post_run, json={"logical_date": None, "conf": {"chunking_settings": {"size": 1}}}),
              "Additional properties are not allowed ('size' was unexpected)")  # fmt: skip
    backfill = {"dag_id": DAG_ID, "from_date": DAYS[0].isoformat(), "to_date": DAYS[-1].isoformat(),
                "reprocess_behavior": "none", "max_active_runs": 3}  # fmt: skip
    _rejected(af.request("POST", "/api/v2/backfills", json={**backfill, "dag_run_conf": {"sources": ["nope"]}}),
              "'nope' is not one of")  # fmt: skip
    assert e2e.runs(DAG_ID) == []

    # 2. A three-day backfill, three runs at once: every day's documents end up in the index.
    created = e2e.create_backfill(backfill)
    af.unpause(DAG_ID)  # also lets the scheduler start yesterday's run: an empty window, nothing to publish
    runs = e2e.wait_for_backfill(DAG_ID, created["id"], count=3)
    e2e.lap("rest: backfill", started)
    windows = sorted((r["data_interval_start"], r["data_interval_end"]) for r in runs)
    assert [w[0][:10] for w in windows] == [d.strftime("%Y-%m-%d") for d in DAYS]
    spans = [(r["start_date"], r["end_date"]) for r in runs]
    assert any(a[0] < b[1] and b[0] < a[1] for a, b in combinations(spans, 2)), f"no two runs overlapped: {spans}"

    docs = e2e.docs(INDEX)
    assert set(docs) == _expected_docs()
    assert "wild yeast" in docs[f"notes:{DAYS[2]:%Y-%m-%d}/sourdough.md"]
    assert docs["tickets:2"].startswith("Invoice totals: The invoice total ignores")
    store = e2e.store(INDEX)
    live = e2e.live(INDEX)
    assert live is not None
    manifests = [store.manifest(v) for v in store.versions()]
    assert {m.trigger for m in manifests} == {"backfill"}
    assert {m.window["start"][:10] for m in manifests if m.window} == {f"{d:%Y-%m-%d}" for d in DAYS}
    assert any(m.rebased_from or m.parent for m in manifests if m.version == live), "the runs were combined"

    # 3. Options through the API: a dry run with a chunking override plans, lists and publishes nothing.
    started = time.perf_counter()
    dry = af.trigger(DAG_ID, {"dry_run": True, "chunking_strategy": "tokens", "chunking_settings": {"max_tokens": 96}})
    af.wait_for_run(DAG_ID, dry, timeout_s=240)
    states = _states(e2e, dry)
    assert states["plan"] == "success"
    assert {states[t] for t in ("process", "assemble", "validate", "evaluate", "snapshot", "publish")} == {"skipped"}
    log = readable_log(af.task_log(DAG_ID, dry, "plan", 1))
    assert "DRY RUN: 0 new, 6 changed, 0 deleted" in log, log[-3000:]
    assert READ_WHOLE in log
    assert e2e.live(INDEX) == live and len(store.versions()) == len(manifests)
    plan = store.run_dir(dry) / "plan.json"
    assert '"strategy": "tokens"' in plan.read_text()
    e2e.lap("rest: dry run", started)

    # 4. A run triggered from the CLI (no logical date) reads everything: nothing is new, the live version stays.
    started = time.perf_counter()
    full = "cli__full_read"
    cli = subprocess.run([AIRFLOW, "dags", "trigger", DAG_ID, "--run-id", full], env=af.env, cwd=af.home,
                         capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    run = af.wait_for_run(DAG_ID, full, timeout_s=240)
    assert run["logical_date"] is None and run["data_interval_start"] is None
    assert READ_WHOLE in readable_log(af.task_log(DAG_ID, full, "plan", 1))
    assert e2e.live(INDEX) == live, "the backfill left something a full read changes"
    e2e.lap("rest: full run", started)

    # 5. ... and point by point it is what one full rebuild of the same data makes.
    started = time.perf_counter()
    rebuild = Settings(home=tmp_path / "rebuild", indexes_dir=e2e.indexes)
    cfg = e2e.config(INDEX)
    result = run_index(cfg, rebuild, embedder=load_embedder(cfg.embedding), target=QdrantTarget(kind="memory"))
    ours = _rows(store.chunks_path(live))
    theirs = _rows(rebuild.index_dir(INDEX) / "versions" / result.version / "chunks.parquet")
    assert sorted(ours) == sorted(theirs)
    for chunk_id, (payload, vector) in ours.items():
        assert payload == theirs[chunk_id][0], chunk_id
        np.testing.assert_allclose(vector, theirs[chunk_id][1], atol=1e-5)
    e2e.lap("rest: rebuild check", started)


def _rows(path: Any) -> dict[str, tuple[dict[str, Any], Any]]:
    rows = pq.read_table(path).to_pylist()
    return {
        r["chunk_id"]: ({k: v for k, v in r.items() if k not in ("version", "embedding")}, np.asarray(r["embedding"]))
        for r in rows
    }
