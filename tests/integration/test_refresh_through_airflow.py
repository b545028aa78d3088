"""A real refresh through Airflow: standalone scheduler + dag-processor + API server, a run triggered over REST.

Not ``dag.test()``: the run is created the way the UI's trigger button creates it (no logical date), its
tasks run in separate processes under the LocalExecutor, ``process`` is mapped over several batches, and
the result lands in the embedded Qdrant folder under ``$GROUNDWORK_HOME``. A second run after the only
unparseable file is removed has nothing to process: the mapped task expands to zero and is skipped,
``assemble`` still runs (trigger rule none_failed) and the live version stays.
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from qdrant_client import QdrantClient

from groundwork.config import EmbeddingConfig
from groundwork.embedding import load_embedder
from tests.integration.airflow_harness import airflow_env, free_port, migrate_db, running_standalone

pytestmark = [pytest.mark.airflow, pytest.mark.model]  # a real Airflow and the real embedding model

INDEX = "airflow_it"
DAG_ID = f"groundwork_refresh__{INDEX}"
PAYLOAD_KEYS = {"doc_id", "source", "uri", "title", "heading_path", "text", "version"}

DOCS = {
    "beekeeping.md": """
        # Beekeeping

        Honey bees live in hives. Worker bees collect nectar from flowers and turn it into honey,
        which they store in wax combs. The queen bee lays the eggs of the colony.
        """,
    "volcanoes.md": """
        # Volcanoes

        A volcano erupts when molten magma rises through the Earth's crust. Lava flows, ash clouds
        and volcanic gases can bury nearby towns.
        """,
    "sourdough.txt": """
        Sourdough bread is leavened with a starter of wild yeast and lactic acid bacteria.
        The dough ferments slowly overnight and is baked in a very hot oven.
        """,
    "chess.md": """
        # Chess openings

        The Sicilian Defence answers 1. e4 with c5. Grandmasters study opening theory,
        pawn structures and endgames to win chess games.
        """,
}
CORRUPT_PDF = "broken.pdf"
QUERIES = {
    "How do bees make honey from nectar?": "beekeeping.md",
    "What happens when magma and lava erupt?": "volcanoes.md",
}


def _write_sources(tmp_path: Path) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(textwrap.dedent(text).strip() + "\n", encoding="utf-8")
    (docs / CORRUPT_PDF).write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nthis is not a pdf body at all\n")
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    index = {
        "name": INDEX,
        "description": "integration test index",
        "schedule": None,  # only the run this test triggers
        "sources": [{"name": "docs", "type": "files", "path": str(docs), "languages": ["eng"]}],
        "chunking": {"strategy": "by_title", "max_characters": 600, "new_after_n_chars": 500},
        "processing": {"batch_size": 2},  # 5 files: 3 mapped process tasks
    }
    (indexes / f"{INDEX}.yaml").write_text(yaml.safe_dump(index, sort_keys=False), encoding="utf-8")
    return docs, indexes


def _by_task(tis: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for ti in tis:
        out.setdefault(ti["task_id"], []).append(ti)
    return out


def test_refresh_through_airflow(tmp_path: Path) -> None:
    started = time.perf_counter()
    home = tmp_path / "groundwork"
    docs, indexes = _write_sources(tmp_path)
    env = airflow_env(
        home / "airflow",
        free_port(),
        extra={"GROUNDWORK_HOME": str(home), "GROUNDWORK_INDEXES": str(indexes)},
    )
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        phases[name] = time.perf_counter() - started - sum(phases.values())

    migrate_db(env)
    lap("migrate")
    with running_standalone(env, tmp_path / "standalone.log") as airflow:
        lap("start")
        dag = airflow.wait_for_dag(DAG_ID)
        lap("parse")
        assert dag["is_paused"], "new DAGs start paused"
        airflow.unpause(DAG_ID)

        run_id = airflow.trigger(DAG_ID)
        run = airflow.wait_for_run(DAG_ID, run_id, timeout_s=240)
        first = _by_task(airflow.task_instances(DAG_ID, run_id))
        lap("run")

        # Nothing new to process: the mapped task expands to nothing and the run still publishes (a no-op).
        (docs / CORRUPT_PDF).unlink()
        rerun_id = airflow.trigger(DAG_ID)
        airflow.wait_for_run(DAG_ID, rerun_id, timeout_s=120)
        second = _by_task(airflow.task_instances(DAG_ID, rerun_id))
        lap("rerun")
    lap("stop")

    assert run["logical_date"] is None and run["run_type"] == "manual"
    process = first["process"]
    assert len(process) >= 2 and sorted(ti["map_index"] for ti in process) == list(range(len(process)))
    assert {ti["state"] for tis in first.values() for ti in tis} == {"success"}
    assert [ti["state"] for ti in second["process"]] == ["skipped"]
    after = ("plan", "assemble", "validate", "evaluate", "snapshot", "publish")
    assert {second[t][0]["state"] for t in after} == {"success"}

    # What the run left on disk: the live pointer, the version's chunk table and manifest.
    index_dir = home / "indexes" / INDEX
    version = json.loads((index_dir / "live.json").read_text())["version"]
    assert sorted(p.name for p in (index_dir / "versions").iterdir()) == [version], "the no-op rerun made a version"
    run_after = datetime.fromisoformat(run["run_after"].replace("Z", "+00:00"))
    assert version.startswith(run_after.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")), "build time is the run's"
    manifest = json.loads((index_dir / "versions" / version / "manifest.json").read_text())
    assert manifest["run_id"] == run_id and manifest["trigger"] == "manual"
    assert [s["uri"] for s in manifest["skipped"]] == [str(docs / CORRUPT_PDF)]
    table = pq.read_table(index_dir / "versions" / version / "chunks.parquet", columns=["chunk_id", "doc_id"])
    assert table.num_rows == manifest["counts"]["chunks"]["total"] > 0
    assert set(table.column("doc_id").to_pylist()) == {f"docs:{name}" for name in DOCS}

    # Every Airflow process is gone: the embedded Qdrant folder can be opened directly.
    client = QdrantClient(path=str(home / "qdrant"))
    try:
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        assert aliases == {INDEX: f"{INDEX}__{version}"}
        assert client.count(INDEX, exact=True).count == table.num_rows
        points, _ = client.scroll(INDEX, limit=table.num_rows + 10, with_payload=True)
        assert len(points) == table.num_rows
        for point in points:
            payload = point.payload or {}
            assert set(payload) >= PAYLOAD_KEYS, f"payload lacks {PAYLOAD_KEYS - set(payload)}"
            assert payload["version"] == version and payload["source"] == "docs" and payload["text"].strip()
            assert payload["uri"].endswith(payload["doc_id"].split(":", 1)[1])

        embedder = load_embedder(EmbeddingConfig())
        for query, expected in QUERIES.items():
            vector = embedder.encode([query])[0].tolist()
            hits = client.query_points(INDEX, query=vector, limit=3, with_payload=True).points
            assert hits and (hits[0].payload or {})["doc_id"] == f"docs:{expected}", (query, hits)
    finally:
        client.close()

    lap("checks")
    timings = ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
    print(f"\nrefresh through Airflow: {sum(phases.values()):.1f} s ({timings}); {len(process)} process map indexes")
