"""Retrieval evaluation: metrics against hand-computed values, golden files, hybrid search, the promotion gate."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from groundwork import sparse
from groundwork.errors import ConfigError, EvaluationRegression
from groundwork.evaluation import QdrantSearcher, TableSearcher, evaluate, load_golden, query_metrics
from groundwork.pipeline import run_index
from groundwork.search import search
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, open_client
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, make_index


def _docs(*ids: str) -> list[tuple[str, str]]:
    return [(f"docs:{i}", f"/x/{i}") for i in ids]


def test_metrics_match_hand_computed_values() -> None:
    relevant = {"a": 2.0, "b": 1.0}
    ranked = _docs("x", "a", "a", "y", "b")  # "a" twice: documents count once
    at3 = query_metrics(ranked, relevant, k=3)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert at3["hit"] == 1.0 and at3["recall"] == 0.5 and at3["mrr"] == 0.5
    assert at3["ndcg"] == pytest.approx((3 / math.log2(3)) / idcg)  # 0.5213
    at4 = query_metrics(ranked, relevant, k=4)
    assert at4["recall"] == 1.0
    assert at4["ndcg"] == pytest.approx((3 / math.log2(3) + 1 / math.log2(5)) / idcg)  # 0.6399
    miss = query_metrics(_docs("x", "y"), relevant, k=2)
    assert miss == {"hit": 0.0, "recall": 0.0, "mrr": 0.0, "ndcg": 0.0}
    perfect = query_metrics(_docs("a", "b"), relevant, k=2)
    assert perfect["ndcg"] == pytest.approx(1.0) and perfect["mrr"] == 1.0


def test_relevance_matches_ids_uris_and_path_suffixes() -> None:
    hit = [("docs:guide/alpha.md", "/srv/docs/guide/alpha.md")]
    for key in ("docs:guide/alpha.md", "/srv/docs/guide/alpha.md", "guide/alpha.md", "alpha.md"):
        assert query_metrics(hit, {key: 1.0}, k=1)["hit"] == 1.0
    assert query_metrics(hit, {"pha.md": 1.0}, k=1)["hit"] == 0.0


def test_golden_files_yaml_and_jsonl(tmp_path: Path) -> None:
    y = tmp_path / "golden.yaml"
    y.write_text(yaml.safe_dump({"queries": [{"id": "q1", "query": "gears", "relevant": {"alpha.md": 2}},
                                             {"query": "battery", "relevant": ["beta.md"]}]}))  # fmt: skip
    golden = load_golden(y)
    assert [(g.id, g.relevant) for g in golden] == [("q1", {"alpha.md": 2.0}), ("1", {"beta.md": 1.0})]
    j = tmp_path / "golden.jsonl"
    j.write_text('{"query": "gears", "relevant": ["alpha.md"]}\n')
    assert load_golden(j)[0].query == "gears"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"queries": [{"query": "no relevant"}]}))
    with pytest.raises(ConfigError, match="entry 0 needs"):
        load_golden(bad)


def test_bm25_weights_and_rrf() -> None:
    ids, values = sparse.doc_vector("gears gears spring", avg_len=3.0)
    weights = dict(zip(ids, values, strict=True))
    assert weights[sparse.term_id("gears")] > weights[sparse.term_id("spring")]
    assert sparse.terms("The gear IS a Gear") == ["gear", "gear"]
    assert sparse.rrf([["a", "b"], ["b", "c"]], 3) == [("b", 1 / 3 + 1 / 2), ("a", 1 / 2), ("c", 1 / 3)]


GOLDEN = {
    "queries": [
        {"id": "gears", "query": "brass gears and one spring", "relevant": {"alpha.md": 2}},
        {"id": "battery", "query": "solar power battery", "relevant": {"beta.md": 2}},
        {"id": "finance", "query": "quarterly revenue forecast finance team", "relevant": ["gamma.txt"]},
    ]
}


def _index(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    golden = tmp_path / "golden.yaml"
    golden.write_text(yaml.safe_dump(GOLDEN))
    return make_index(tmp_path, evaluation={"golden": str(golden), "k": 3, "mode": "hybrid"}, search_mode="hybrid",
                      **extra)  # fmt: skip


def test_hybrid_search_in_qdrant_agrees_with_exact_in_memory_search(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path)
    embedder = FakeEmbedder()
    result = run_index(cfg, settings, embedder=embedder, target=memory_target)
    golden = load_golden(cfg.evaluation.golden)  # type: ignore[arg-type]
    table = evaluate(TableSearcher(VersionStore(settings, "demo").chunks_path(result.version), embedder, "hybrid"),
                     golden, 3, "hybrid")  # fmt: skip
    with open_client(memory_target) as client:
        hits = search(client, "demo", embedder, "solar battery", limit=2, mode="hybrid")
        live = evaluate(QdrantSearcher(client, "demo", embedder, "hybrid"), golden, 3, "hybrid")
    assert hits[0].payload["doc_id"] == "docs:beta.md"
    assert table.metrics == live.metrics and table.metrics["hit"] == 1.0
    assert result.manifest.evaluation["metrics"] == table.metrics  # type: ignore[index]


def test_dense_only_collections_refuse_hybrid_search(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    run_index(make_index(tmp_path), settings, embedder=FakeEmbedder(), target=memory_target)
    with open_client(memory_target) as client, pytest.raises(ConfigError, match="search_mode: hybrid"):
        search(client, "demo", FakeEmbedder(), "gears", mode="hybrid")


def test_gate_blocks_a_worse_candidate_and_passes_equal_or_better(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path)
    v1 = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    alpha = tmp_path / "docs" / "alpha.md"
    good = alpha.read_text()
    alpha.write_text("# Alpha guide\n\nThis page moved. See the new handbook.\n")  # retrieval gets worse
    with pytest.raises(EvaluationRegression, match=r"(?s)ndcg@3 1.000 -> .*brass gears") as err:
        run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    assert "Nothing was published" in str(err.value)
    assert VersionStore(settings, "demo").live().version == v1.version  # type: ignore[union-attr]
    with open_client(memory_target) as client:
        assert [c.name for c in client.get_collections().collections] == [v1.published.collection]

    forced = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target, force_reason="page moved")
    record = forced.manifest.evaluation
    assert record["forced"] and record["reason"] == "page moved" and record["regressions"]  # type: ignore[index]
    assert record["retrieval_diff"] and record["retrieval_diff"][0]["id"] == "gears"  # type: ignore[index]

    alpha.write_text(good)  # better again: passes without force
    fixed = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    assert fixed.manifest.evaluation["passed"]  # type: ignore[index]
    (tmp_path / "docs" / "delta.md").write_text("# Delta\n\nDelta drones fly in formation.\n")  # equal metrics
    equal = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    assert equal.manifest.evaluation["passed"] and equal.created  # type: ignore[index]
    assert equal.manifest.evaluation["metrics"] == fixed.manifest.evaluation["metrics"]  # type: ignore[index]
