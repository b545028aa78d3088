"""Retrieval evaluation: golden queries, metrics, searchers, and the promotion gate.

Golden query files (YAML, or JSON Lines with one query per line)::

    queries:
      - id: rollback                      # optional; defaults to the query's position
        query: How do I roll back an index version?
        relevant:                         # doc ids, uris or path suffixes; graded or not
          include/docs/operations.md: 2   # grade 2 = highly relevant
          glossary:rollback: 1
      - query: What is a chunk?
        relevant: [glossary:chunk]        # a list means grade 1 each

Metrics are document-level (the hits' documents in rank order, each counted
once): hit@k, recall@k, MRR (over the top k) and nDCG@k with gains
``2^grade - 1``. :class:`TableSearcher` searches a chunk table exactly in
memory (the gate uses it for the candidate and the live version alike);
:class:`QdrantSearcher` searches a collection or alias. Both support ``dense``
and ``hybrid`` (dense + BM25 sparse, fused with RRF) modes.

The promotion gate (:func:`evaluate_version`) blocks a candidate whose mean
metric drops by more than the index's tolerance against the live version,
unless forced with a reason; metrics and a retrieval diff (queries whose top-k
documents changed) go into the version's ``evaluation.json`` and manifest.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from groundwork import sparse
from groundwork.config import IndexConfig
from groundwork.embedding import Embedder
from groundwork.errors import ConfigError, EvaluationRegression
from groundwork.versions import VersionStore, write_json_atomic

__all__ = [
    "EvalReport",
    "GoldenQuery",
    "QdrantSearcher",
    "TableSearcher",
    "evaluate",
    "evaluate_version",
    "load_golden",
    "query_metrics",
]

log = logging.getLogger(__name__)
METRICS = ("hit", "recall", "mrr", "ndcg")


@dataclass(frozen=True)
class GoldenQuery:
    id: str
    query: str
    relevant: dict[str, float]


def load_golden(path: Path) -> list[GoldenQuery]:
    """Read a golden query file; errors name the file and the entry."""
    if not path.is_file():
        raise ConfigError(f"{path}: golden query file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".jsonl", ".ndjson"):
            entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = yaml.safe_load(text) or {}
            entries = loaded.get("queries", []) if isinstance(loaded, dict) else loaded
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid golden queries: {exc}") from None
    queries = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not str(entry.get("query", "")).strip() or not entry.get("relevant"):
            raise ConfigError(f"{path}: entry {n} needs a non-empty 'query' and 'relevant'")
        relevant = entry["relevant"]
        grades = {str(r): 1.0 for r in relevant} if isinstance(relevant, list) else {
            str(k): float(v) for k, v in relevant.items()
        }  # fmt: skip
        queries.append(GoldenQuery(str(entry.get("id", n)), str(entry["query"]), grades))
    if not queries:
        raise ConfigError(f"{path}: no queries")
    return queries


def _grade(hit: tuple[str, str], relevant: dict[str, float]) -> float:
    """The grade of a hit (doc_id, uri) by exact id/uri or path suffix."""
    doc_id, uri = hit
    for key, grade in relevant.items():
        if key in (doc_id, uri) or doc_id.endswith(":" + key) or uri.endswith("/" + key):
            return grade
    return 0.0


def query_metrics(ranked: Sequence[tuple[str, str]], relevant: dict[str, float], k: int) -> dict[str, float]:
    """hit@k, recall@k, reciprocal rank and nDCG@k of one ranked list of (doc_id, uri)."""
    seen: set[str] = set()
    docs: list[tuple[str, str]] = []
    for hit in ranked:
        if hit[0] not in seen:
            seen.add(hit[0])
            docs.append(hit)
    top = docs[:k]
    grades = [_grade(h, relevant) for h in top]
    found = {key for key in relevant for h in top if _grade(h, {key: 1.0}) > 0}
    first = next((i for i, g in enumerate(grades) if g > 0), None)
    dcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(grades))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return {
        "hit": 1.0 if first is not None else 0.0,
        "recall": len(found) / len(relevant),
        "mrr": 1.0 / (first + 1) if first is not None else 0.0,
        "ndcg": dcg / idcg if idcg else 0.0,
    }


class Searcher(Protocol):
    def ranked(self, query: str, limit: int) -> list[tuple[str, str]]: ...


class TableSearcher:
    """Exact search over a chunk table in memory (dense or hybrid)."""

    def __init__(self, chunks_path: Path, embedder: Embedder, mode: str = "dense") -> None:
        table = pq.read_table(chunks_path, columns=["chunk_id", "doc_id", "uri", "text", "embedding"])
        emb = table.column("embedding").combine_chunks()
        dim = emb.type.list_size
        self.vectors = np.asarray(pc.list_flatten(emb).to_numpy(zero_copy_only=False), dtype=np.float32).reshape(
            -1, dim
        )
        self.ids = table.column("chunk_id").to_pylist()
        self.hits = list(zip(table.column("doc_id").to_pylist(), table.column("uri").to_pylist(), strict=True))
        self.embedder = embedder
        self.mode = mode
        if mode == "hybrid":
            texts = table.column("text").to_pylist()
            avg = sparse.average_length(texts)
            self.sparse_docs = [dict(zip(*sparse.doc_vector(t, avg), strict=True)) for t in texts]
            df: dict[int, int] = {}
            for vec in self.sparse_docs:
                for i in vec:
                    df[i] = df.get(i, 0) + 1
            self.idf = {i: sparse.idf(n, len(texts)) for i, n in df.items()}

    def _dense(self, query: str, limit: int) -> list[int]:
        q = self.embedder.encode([query])[0]
        norms = np.linalg.norm(self.vectors, axis=1) * (np.linalg.norm(q) or 1.0)
        scores = (self.vectors @ q) / np.where(norms == 0, 1.0, norms)
        return list(np.argsort(-scores, kind="stable")[:limit])

    def _sparse(self, query: str, limit: int) -> list[int]:
        ids, _ = sparse.query_vector(query)
        scores = [(sum(self.idf.get(i, 0.0) * d.get(i, 0.0) for i in ids), n) for n, d in enumerate(self.sparse_docs)]
        ranked = sorted((s for s in scores if s[0] > 0), key=lambda s: (-s[0], s[1]))
        return [n for _, n in ranked[:limit]]

    def ranked(self, query: str, limit: int) -> list[tuple[str, str]]:
        dense = self._dense(query, limit * 4)
        if self.mode != "hybrid":
            return [self.hits[i] for i in dense[:limit]]
        fused = sparse.rrf([[str(i) for i in dense], [str(i) for i in self._sparse(query, limit * 4)]], limit)
        return [self.hits[int(i)] for i, _ in fused]


class QdrantSearcher:
    """Search a Qdrant collection or alias, as a RAG application would."""

    def __init__(self, client: Any, collection: str, embedder: Embedder, mode: str = "dense") -> None:
        self.client, self.collection, self.embedder, self.mode = client, collection, embedder, mode

    def ranked(self, query: str, limit: int) -> list[tuple[str, str]]:
        from groundwork.search import search

        hits = search(self.client, self.collection, self.embedder, query, limit=limit * 4, mode=self.mode)
        return [(str(h.payload.get("doc_id")), str(h.payload.get("uri"))) for h in hits]


@dataclass
class EvalReport:
    k: int
    mode: str
    metrics: dict[str, float]
    per_query: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(searcher: Searcher, golden: Sequence[GoldenQuery], k: int = 10, mode: str = "dense") -> EvalReport:
    per_query: dict[str, dict[str, Any]] = {}
    for q in golden:
        ranked = searcher.ranked(q.query, k)
        docs = list(dict.fromkeys(d for d, _ in ranked))[:k]
        per_query[q.id] = {"query": q.query, "top": docs, **query_metrics(ranked, q.relevant, k)}
    means = {m: round(float(np.mean([r[m] for r in per_query.values()])), 4) for m in METRICS}
    return EvalReport(k, mode, means, per_query)


def retrieval_diff(old: EvalReport, new: EvalReport) -> list[dict[str, Any]]:
    """Queries whose top-k documents changed between two reports."""
    out = []
    for qid, after in new.per_query.items():
        before = old.per_query.get(qid)
        if before is not None and before["top"] != after["top"]:
            out.append({"id": qid, "query": after["query"], "before": before["top"], "after": after["top"],
                        "ndcg_before": before["ndcg"], "ndcg_after": after["ndcg"]})  # fmt: skip
    return out


def evaluate_version(
    config: IndexConfig,
    store: VersionStore,
    version: str,
    embedder: Embedder,
    *,
    force_reason: str | None = None,
) -> dict[str, Any] | None:
    """The promotion gate: compare ``version`` with the live version on the index's golden queries."""
    cfg = config.evaluation
    if cfg.golden is None:
        return None
    started = time.perf_counter()
    golden = load_golden(cfg.golden)
    candidate = evaluate(TableSearcher(store.chunks_path(version), embedder, cfg.mode), golden, cfg.k, cfg.mode)
    live = store.live()
    baseline = None
    if live is not None and live.version != version and store.chunks_path(live.version).is_file():
        live_manifest = store.manifest(live.version)
        if live_manifest.model_id == embedder.model_id:
            baseline = evaluate(TableSearcher(store.chunks_path(live.version), embedder, cfg.mode), golden, cfg.k,
                                cfg.mode)  # fmt: skip
    regressions = []
    if baseline is not None:
        for metric in METRICS:
            drop = baseline.metrics[metric] - candidate.metrics[metric]
            if drop > cfg.tolerance:
                regressions.append(
                    f"{metric}@{cfg.k} {baseline.metrics[metric]:.3f} -> {candidate.metrics[metric]:.3f} "
                    f"(-{drop:.3f} > tolerance {cfg.tolerance})"
                )
    record = {
        "k": cfg.k,
        "mode": cfg.mode,
        "golden": str(cfg.golden),
        "metrics": candidate.metrics,
        "live_version": live.version if baseline is not None and live else None,
        "live_metrics": baseline.metrics if baseline else None,
        "regressions": regressions,
        "passed": not regressions,
        "forced": bool(regressions and force_reason),
        "reason": force_reason if regressions else None,
        "retrieval_diff": retrieval_diff(baseline, candidate) if baseline else [],
    }
    write_json_atomic(store.version_dir(version) / "evaluation.json", {**record, "per_query": candidate.per_query})
    store.update_manifest(version, evaluation=record, timings_s={"evaluate": round(time.perf_counter() - started, 3)})
    summary = ", ".join(f"{m}@{cfg.k} {v:.3f}" for m, v in candidate.metrics.items())
    log.info("evaluation of %s (%s): %s", version, cfg.mode, summary)
    if regressions and not force_reason:
        diff = retrieval_diff(baseline, candidate) if baseline else []
        changed = "\n".join(f"    {d['query']!r}: {d['before'][:3]} -> {d['after'][:3]}" for d in diff[:5])
        raise EvaluationRegression(
            f"candidate {version} retrieves worse than the live version {record['live_version']} on "
            f"{len(golden)} golden queries:\n  "
            + "\n  ".join(regressions)
            + (f"\n  queries whose top-{cfg.k} changed:\n{changed}" if changed else "")
            + "\nNothing was published; force with a reason to publish anyway."
        )
    return record
