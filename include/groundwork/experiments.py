"""The DVC experiment pipeline's stages: chunk, embed and evaluate an evaluation corpus.

``dvc.yaml`` (top level) runs these through ``groundwork experiment ...`` with
``params.yaml``: the corpus is an index definition (its sources), the chunking
and embedding settings come from the params (so ``dvc exp run -S
chunking.strategy=tokens`` tries a variant), and the evaluation writes
hit@k, recall@k, MRR and nDCG@k for both search modes to a metrics file that
``dvc exp show`` and ``dvc metrics diff`` compare.

Stages exchange files: ``chunks.parquet`` (payload columns, no vectors) and
``embedded.parquet`` (the chunk table). Embedding goes through the shared
embedding cache, so a variant that does not change chunk texts embeds nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from groundwork.chunk_table import PAYLOAD_COLUMNS, ChunkTableWriter, chunk_schema
from groundwork.config import IndexConfig, load_index
from groundwork.embedding import load_embedder
from groundwork.embedding_cache import CacheStats, EmbeddingCache, embed_with_cache
from groundwork.errors import ChunkingError, ConfigError, DocumentError
from groundwork.evaluation import TableSearcher, evaluate, load_golden
from groundwork.processing import StageTimer, chunk_document
from groundwork.settings import Settings
from groundwork.sources import discover

__all__ = ["chunk_stage", "embed_stage", "evaluate_stage", "load_params"]


def load_params(path: Path) -> dict[str, Any]:
    params = yaml.safe_load(path.read_text()) or {}
    for key in ("corpus", "chunking", "embedding", "evaluation"):
        if key not in params:
            raise ConfigError(f"{path}: missing section {key!r}")
    return params


def _config(params: dict[str, Any], base: Path) -> IndexConfig:
    index = load_index(base / params["corpus"]["index"])
    data = index.model_dump(mode="json")
    data.update(chunking=params["chunking"], embedding=params["embedding"], source_file=index.source_file)
    return IndexConfig.model_validate(data)


def chunk_stage(params_path: Path, out: Path) -> dict[str, Any]:
    """Partition and chunk the corpus with the params' strategy; write payload rows (no vectors)."""
    params = load_params(params_path)
    cfg = _config(params, params_path.parent)
    embedder = load_embedder(cfg.embedding)  # the tokenizer only: no weights are loaded here
    rows: list[dict[str, Any]] = []
    skipped = 0
    for source in cfg.sources:
        for doc in discover(source).documents:
            try:
                for part in chunk_document(cfg, doc, embedder, StageTimer()):
                    rows.extend(part)
            except (DocumentError, ChunkingError):
                skipped += 1  # the quality gate's business in a refresh; here only counted
    out.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([f for f in chunk_schema(1) if f.name in PAYLOAD_COLUMNS and f.name != "version"])
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema), out)
    return {"chunks": len(rows), "documents_skipped": skipped}


def embed_stage(params_path: Path, chunks: Path, out: Path, settings: Settings) -> dict[str, Any]:
    """Embed the chunk texts through the embedding cache; write a chunk table."""
    params = load_params(params_path)
    cfg = _config(params, params_path.parent)
    embedder = load_embedder(cfg.embedding)
    rows = pq.read_table(chunks).to_pylist()
    stats = CacheStats()
    started = time.perf_counter()
    vectors = embed_with_cache(embedder, EmbeddingCache(settings.cache_path), [r["text"] for r in rows], stats)
    with ChunkTableWriter(out, embedder.dimension) as writer:
        writer.write_rows(rows, vectors if len(rows) else np.zeros((0, embedder.dimension), dtype=np.float32))
    return {"embedded": stats.embedded, "reused": stats.reused, "seconds": round(time.perf_counter() - started, 2)}


def evaluate_stage(params_path: Path, table: Path, out: Path) -> dict[str, Any]:
    """Metrics of both search modes on the golden queries, written as a DVC metrics file."""
    params = load_params(params_path)
    cfg = _config(params, params_path.parent)
    ev = params["evaluation"]
    golden = load_golden(params_path.parent / ev["golden"])
    embedder = load_embedder(cfg.embedding)
    metrics: dict[str, Any] = {"chunks": pq.read_metadata(table).num_rows, "queries": len(golden)}
    for mode in ("dense", "hybrid"):
        report = evaluate(TableSearcher(table, embedder, mode), golden, int(ev["k"]), mode)
        metrics[mode] = {f"{m}_at_{ev['k']}" if m != "mrr" else "mrr": v for m, v in report.metrics.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
