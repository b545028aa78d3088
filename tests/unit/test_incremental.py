"""Incremental refresh: convergence with a full rebuild, overlapping runs, the delete breaker, model changes."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from groundwork.assembly import assemble
from groundwork.config import IndexConfig
from groundwork.embedding_cache import EmbeddingCache
from groundwork.errors import DeleteBreakerTripped, SourceError
from groundwork.pipeline import run_index
from groundwork.planning import plan_run, read_plan
from groundwork.processing import process_batch
from groundwork.publishing import commit_version
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, open_client, resolve_target
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, make_index

WORDS = "alpha beta gamma delta index chunk vector alias version source model token window page title".split()


def _text(rng: random.Random) -> str:
    sections = []
    for n in range(rng.randint(1, 3)):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
        sections.append(f"# Section {n} {rng.choice(WORDS)}\n\n{body}.")
    return "\n\n".join(sections) + "\n"


def _state(settings: Settings, index: str) -> dict[str, tuple[str, dict[str, Any], np.ndarray[Any, Any]]]:
    store = VersionStore(settings, index)
    live = store.live()
    assert live is not None
    table = pq.read_table(store.chunks_path(live.version)).to_pylist()
    skip = {"version", "embedding", "source_modified_at"}
    return {
        r["chunk_id"]: (r["text"], {k: v for k, v in r.items() if k not in skip}, np.asarray(r["embedding"]))
        for r in table
    }


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert sorted(a) == sorted(b)
    for cid in a:
        assert a[cid][0] == b[cid][0]
        assert a[cid][1] == b[cid][1]
        np.testing.assert_allclose(a[cid][2], b[cid][2], atol=1e-6)


@pytest.mark.parametrize("seed", [7, 11])
def test_random_edits_converge_to_a_full_rebuild(tmp_path: Path, seed: int, memory_target: QdrantTarget) -> None:
    rng = random.Random(seed)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"doc{i:02d}.md").write_text(_text(rng))
    # The gate is not the point here (and costs seconds per run): see test_quality_gate.py.
    cfg = make_index(tmp_path, processing={"max_delete_share": 1.0, "batch_size": 3}, validation={"enabled": False})
    home = Settings(home=tmp_path / "incremental", indexes_dir=tmp_path)
    cache = EmbeddingCache(home.cache_path)
    run_index(cfg, home, embedder=FakeEmbedder(), cache=cache, target=memory_target)
    next_id = 12
    for step in range(6):
        existing = sorted(docs.iterdir())
        for _ in range(rng.randint(1, 4)):
            op = rng.choice(["add", "edit", "delete"] if len(existing) > 3 else ["add", "edit"])
            if op == "add":
                (docs / f"doc{next_id:02d}.md").write_text(_text(rng))
                next_id += 1
            elif op == "edit" and existing:
                target = rng.choice(existing)
                if target.exists():
                    target.write_text(_text(rng))
            elif existing:
                victim = existing.pop(rng.randrange(len(existing)))
                victim.unlink(missing_ok=True)
        embedder = FakeEmbedder()
        run_index(cfg, home, embedder=embedder, cache=cache, target=memory_target, run_id=f"step{step}")
        fresh = Settings(home=tmp_path / f"rebuild{step}", indexes_dir=tmp_path)
        run_index(cfg, fresh, embedder=FakeEmbedder(), target=memory_target)
        _assert_same(_state(home, "demo"), _state(fresh, "demo"))


def _two_source_index(tmp_path: Path) -> IndexConfig:
    for name in ("left", "right"):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        for i in range(3):
            (folder / f"{name}{i}.md").write_text(f"# {name} {i}\n\n{name} document number {i} about {WORDS[i]}.\n")
    return make_index(
        tmp_path,
        sources=[
            {"name": "left", "type": "files", "path": str(tmp_path / "left")},
            {"name": "right", "type": "files", "path": str(tmp_path / "right")},
        ],
    )


def test_overlapping_runs_rebase_and_lose_no_update(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _two_source_index(tmp_path)
    v0 = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    store = VersionStore(settings, "demo")
    (tmp_path / "left" / "left0.md").write_text("# left 0\n\nThe left change.\n")
    (tmp_path / "right" / "right9.md").write_text("# right 9\n\nA new right document.\n")

    plans = {}
    for run, source in (("run_a", "left"), ("run_b", "right")):
        embedder = FakeEmbedder()
        plans[run] = plan_run(cfg, store, run_id=run, embedder=embedder, sources=[source])
        for batch in read_plan(plans[run]).batches:
            process_batch(cfg, Path(batch), embedder, None)
    candidates = {run: assemble(cfg, store, path).version for run, path in plans.items()}
    assert {store.manifest(v).parent for v in candidates.values()} == {v0.version}

    first = commit_version(cfg, settings, plans["run_a"], candidates["run_a"], memory_target)
    second = commit_version(cfg, settings, plans["run_b"], candidates["run_b"], memory_target)
    assert second.version != candidates["run_b"]  # rebased onto run_a's version
    final = store.manifest(second.version)
    assert final.parent == first.version and final.rebased_from == v0.version
    texts = {r[0] for r in _state(settings, "demo").values()}
    assert any("The left change." in t for t in texts) and any("A new right document." in t for t in texts)
    with open_client(memory_target) as client:
        assert client.count("demo", exact=True).count == len(texts)


def _run_one(home: str, index_dir: str, source: str) -> None:
    from groundwork.config import load_index

    settings = Settings(home=Path(home), indexes_dir=Path(index_dir))
    cfg = load_index(Path(index_dir) / "demo.yaml")
    target = resolve_target(cfg.qdrant, settings)
    run_index(cfg, settings, embedder=FakeEmbedder(), target=target, sources=[source], run_id=f"concurrent_{source}")


def test_concurrent_processes_on_embedded_qdrant_keep_every_change(tmp_path: Path) -> None:
    import yaml

    sources = ["s1", "s2", "s3"]
    for name in sources:
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.md").write_text(f"# {name}\n\noriginal {name} text.\n")
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    raw = {
        "name": "demo",
        "sources": [{"name": n, "type": "files", "path": str(tmp_path / n)} for n in sources],
        "snapshots": {"enabled": False},
    }
    (indexes / "demo.yaml").write_text(yaml.safe_dump(raw))
    settings = Settings(home=tmp_path / "data", indexes_dir=indexes)
    _run_one(str(settings.home), str(indexes), "s1")  # v0 has s1 only; s2, s3 are new in their runs
    for name in sources:
        (tmp_path / name / "a.md").write_text(f"# {name}\n\nchanged {name} text.\n")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_run_one, args=(str(settings.home), str(indexes), n)) for n in sources]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    texts = {r[0] for r in _state(settings, "demo").values()}
    for name in sources:
        assert any(f"changed {name} text." in t for t in texts), texts


def test_delete_breaker_blocks_then_a_forced_run_is_recorded(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path, processing={"max_delete_share": 0.2})
    v1 = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    (tmp_path / "docs" / "beta.md").unlink()
    with pytest.raises(DeleteBreakerTripped, match=r"delete 1 of 3 documents \(33%\).*docs: 1"):
        run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    assert VersionStore(settings, "demo").live().version == v1.version  # type: ignore[union-attr]
    forced = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target, force_delete_reason="retired")
    assert forced.manifest.forced_delete == "retired" and forced.manifest.counts["documents"]["deleted"] == 1


def test_an_empty_source_is_never_read_as_deleting_everything(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path, processing={"max_delete_share": 1.0})
    run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    for file in (tmp_path / "docs").iterdir():
        file.unlink()
    with pytest.raises(SourceError, match="listed no documents"):
        run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)


def test_model_change_reembeds_everything_and_never_mixes(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    cache = EmbeddingCache(settings.cache_path)
    first = run_index(cfg, settings, embedder=FakeEmbedder(), cache=cache, target=memory_target)
    other = FakeEmbedder(model_id="fake@2:norm")  # same dimension, another model
    second = run_index(cfg, settings, embedder=other, cache=cache, target=memory_target)
    chunks = second.manifest.counts["chunks"]
    assert chunks["embedded"] == chunks["total"] == first.manifest.counts["chunks"]["total"]
    assert chunks["carried"] == 0 and second.manifest.model_id == "fake@2:norm"


def test_retried_run_gives_the_same_version_and_no_duplicates(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    store = VersionStore(settings, "demo")
    embedder = FakeEmbedder()
    plan = plan_run(cfg, store, run_id="r1", embedder=embedder)
    for batch in read_plan(plan).batches:
        process_batch(cfg, Path(batch), embedder, None)
        process_batch(cfg, Path(batch), embedder, None)  # a retried task overwrites its own output
    version = assemble(cfg, store, plan).version
    assert assemble(cfg, store, plan).version == version
    commit_version(cfg, settings, plan, version, memory_target)
    again = commit_version(cfg, settings, plan, version, memory_target)
    assert not again.changed
    with open_client(memory_target) as client:
        assert client.count("demo", exact=True).count == pq.read_metadata(store.chunks_path(version)).num_rows
        assert [c.name for c in client.get_collections().collections] == [f"demo__{version}"]
