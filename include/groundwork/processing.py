"""Process one batch of documents: partition, chunk, enrich, embed, write.

For each document of a batch file: partition it (unstructured, or the row's
rendered text), chunk it with the index's strategy, enrich the chunks, and
embed them through the embedding cache. The batch's chunks are written as one
chunk table beside a small JSON report (counts, skipped documents with their
reasons, timings). A document that fails is recorded and skipped; the batch
goes on. Writing is atomic and keyed by the batch file, so a retried task
overwrites its own output and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from groundwork.chunk_table import ChunkTableWriter, iter_batches
from groundwork.chunking import chunk_elements
from groundwork.config import FileSourceConfig, IndexConfig
from groundwork.documents import SourceDocument, read_documents
from groundwork.embedding import Embedder
from groundwork.embedding_cache import CacheStats, EmbeddingCache, embed_with_cache
from groundwork.enrichment import document_language, enrich
from groundwork.errors import ChunkingError, DocumentError
from groundwork.partition import partition_document
from groundwork.sources.skipped import Skipped
from groundwork.versions import write_json_atomic

__all__ = ["StageTimer", "batch_output_paths", "chunk_document", "process_batch"]

log = logging.getLogger(__name__)

# Embed in groups of about this many chunks. The model sorts each group by length before it
# batches, so a large group pads little (groups of 256 cost ~10% more encode time than one call
# on the same texts, measured on a bimodal chunk-length corpus); rows waiting here hold text and
# metadata only, a few MB per thousand.
_EMBED_GROUP = 2048
# A single document with more chunks than this spills its embedded rows to a temporary table.
_SPILL_ROWS = 4096


def batch_output_paths(batch_path: Path) -> tuple[Path, Path]:
    """(chunk table, report) written for a batch file."""
    out = batch_path.parent.parent / "out"
    return out / f"{batch_path.stem}.parquet", out / f"{batch_path.stem}.report.json"


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def process_batch(
    config: IndexConfig,
    batch_path: Path,
    embedder: Embedder,
    cache: EmbeddingCache | None,
) -> Path:
    """Turn one batch file into a chunk table; returns the table's path."""
    table_path, report_path = batch_output_paths(batch_path)
    timer = StageTimer()
    stats = CacheStats()
    skipped: list[Skipped] = []
    documents = chunks = 0
    with timer.stage("load_model"):
        dim = embedder.dimension
    with ChunkTableWriter(table_path, dim) as writer:
        pending = _Pending(embedder, cache, stats, timer)
        for doc in read_documents(batch_path):
            documents += 1
            try:
                chunks += pending.add_document(chunk_document(config, doc, embedder, timer), writer)
            except (DocumentError, ChunkingError) as exc:
                error_type = exc.error_type if isinstance(exc, DocumentError) else type(exc).__name__
                reason = exc.reason if isinstance(exc, DocumentError) else str(exc)
                stage = "partition" if isinstance(exc, DocumentError) else "chunk"
                skipped.append(Skipped(doc.source, doc.uri, error_type, reason, stage))
                log.warning("skipped %s: %s: %s", doc.uri, error_type, reason)
        pending.flush(writer)
    report = {
        "batch": str(batch_path),
        "documents": documents,
        "documents_skipped": len(skipped),
        "chunks": chunks,
        "embedded": stats.embedded,
        "reused": stats.reused,
        "skipped": [s.to_dict() for s in skipped],
        "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()},
    }
    write_json_atomic(report_path, report)
    log.info(
        "batch %s: %d documents, %d chunks (%d embedded, %d from cache), %d skipped",
        batch_path.name, documents, chunks, stats.embedded, stats.reused, len(skipped),
    )  # fmt: skip
    return table_path


class _Pending:
    """Rows waiting to be embedded and written, in groups of about ``_EMBED_GROUP``.

    A document's rows reach the batch's table only once the whole document
    chunked without error; a very large document spills its embedded rows to
    a temporary table meanwhile, so memory stays bounded and a failure late in
    the document leaves nothing of it behind.
    """

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | None, stats: CacheStats, timer: StageTimer) -> None:
        self.embedder, self.cache, self.stats, self.timer = embedder, cache, stats, timer
        self.rows: list[dict[str, Any]] = []

    def _write(self, rows: list[dict[str, Any]], writer: ChunkTableWriter) -> None:
        with self.timer.stage("embed"):
            vectors = embed_with_cache(self.embedder, self.cache, [r["text"] for r in rows], self.stats)
        with self.timer.stage("write"):
            writer.write_rows(rows, vectors)

    def flush(self, writer: ChunkTableWriter) -> None:
        if self.rows:
            self._write(self.rows, writer)
            self.rows = []

    def add_document(self, segments: Iterator[list[dict[str, Any]]], writer: ChunkTableWriter) -> int:
        doc_rows: list[dict[str, Any]] = []
        spill: ChunkTableWriter | None = None
        count = 0
        try:
            for rows in segments:
                doc_rows.extend(rows)
                count += len(rows)
                if len(doc_rows) >= _SPILL_ROWS:
                    spill = spill or ChunkTableWriter(writer.path.with_name(writer.path.name + ".spill"), writer.dim)
                    self._write(doc_rows, spill)
                    doc_rows = []
        except BaseException:
            if spill is not None:
                spill.abort()
            raise
        if spill is not None:
            spill.close()
            self.flush(writer)
            for batch in iter_batches(spill.path):
                writer.write_batch(batch)
            spill.path.unlink()
        self.rows.extend(doc_rows)
        if len(self.rows) >= _EMBED_GROUP:
            self.flush(writer)
        return count


def chunk_document(
    config: IndexConfig, doc: SourceDocument, embedder: Embedder, timer: StageTimer
) -> Iterator[list[dict[str, Any]]]:
    """Chunk rows of one document, a segment at a time."""
    source = config.source(doc.source)
    file_source = source if isinstance(source, FileSourceConfig) else None
    seq = 0
    language: str | None = None
    segments = partition_document(doc, file_source)
    while True:
        with timer.stage("partition"):
            elements = next(segments, None)
        if elements is None:
            break
        with timer.stage("chunk"):
            drafts = chunk_elements(elements, config.chunking, embedder.tokenizer)
        with timer.stage("enrich"):
            if seq == 0:
                language = document_language(doc, elements, config.enrichment.detect_language)
            rows = enrich(doc, drafts, config.enrichment, language, start_seq=seq)
        seq += len(rows)
        yield rows
    if seq == 0:
        raise DocumentError(doc.uri, "the document produced no chunks", "NoChunks")
