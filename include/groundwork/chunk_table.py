"""The chunk table: one Arrow schema for every batch output and every version.

Columns (all chunk payload fields, then the vector)::

    chunk_id            string   uuid5(doc_id, chunk_index, text_hash); also the Qdrant point id
    doc_id              string   "<source>:<relative path or row key>"
    source, uri, title  string
    heading_path        list<string>
    page                int32    first page of the chunk (null when the format has none)
    element_categories  list<string>
    language            string   ISO 639-3, null when unknown
    text                string
    char_count          int32
    token_count         int32    counted with the embedding model's tokenizer
    chunk_index         int32    position in the document
    text_hash           string   sha256 of text (the embedding cache key)
    doc_hash            string   content hash of the source document
    source_modified_at  string   ISO-8601 UTC, null when unknown
    metadata            string   JSON object: static index metadata + column metadata
    version             string   the version the table belongs to ("" in batch outputs)
    embedding           fixed_size_list<float32>[dim]

Tables are written as Parquet through :class:`ChunkTableWriter` in bounded row
groups (atomically: a reader never sees half a file) and read back in batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groundwork.embedding import Vectors

__all__ = [
    "PAYLOAD_COLUMNS",
    "ChunkTableWriter",
    "chunk_schema",
    "iter_batches",
    "payload_of",
    "read_column",
]

ROW_GROUP = 2048


def chunk_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("chunk_id", pa.string()),
            ("doc_id", pa.string()),
            ("source", pa.string()),
            ("uri", pa.string()),
            ("title", pa.string()),
            ("heading_path", pa.list_(pa.string())),
            ("page", pa.int32()),
            ("element_categories", pa.list_(pa.string())),
            ("language", pa.string()),
            ("text", pa.string()),
            ("char_count", pa.int32()),
            ("token_count", pa.int32()),
            ("chunk_index", pa.int32()),
            ("text_hash", pa.string()),
            ("doc_hash", pa.string()),
            ("source_modified_at", pa.string()),
            ("metadata", pa.string()),
            ("version", pa.string()),
            ("embedding", pa.list_(pa.float32(), dim)),
        ],
        metadata={"groundwork.schema": "chunks/1"},
    )


PAYLOAD_COLUMNS = [f.name for f in chunk_schema(1) if f.name != "embedding"]


class ChunkTableWriter:
    """Streams rows and vectors into a Parquet chunk table, in bounded row groups."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.schema = chunk_schema(dim)
        self.rows_written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = path.with_name(path.name + ".tmp")
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write_rows(self, rows: Sequence[dict[str, Any]], vectors: Vectors, version: str = "") -> None:
        if len(rows) != len(vectors):
            raise ValueError(f"{len(rows)} rows but {len(vectors)} vectors")
        if not rows:
            return
        columns: dict[str, Any] = {name: [r.get(name) for r in rows] for name in PAYLOAD_COLUMNS}
        columns["version"] = [version or r.get("version") or "" for r in rows]
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, self.dim)
        self.write_batch(pa.RecordBatch.from_pydict(columns, schema=self.schema))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if batch.schema != self.schema:
            batch = pa.RecordBatch.from_arrays([batch.column(n) for n in self.schema.names], schema=self.schema)
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending, schema=self.schema), row_group_size=ROW_GROUP)
            self.rows_written += self._pending_rows
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ChunkTableWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_batches(path: Path, columns: list[str] | None = None, batch_size: int = ROW_GROUP) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)


def read_column(path: Path, *columns: str) -> pa.Table:
    return pq.read_table(path, columns=list(columns))


def table_dim(path: Path) -> int:
    field = pq.read_schema(path).field("embedding")
    return int(field.type.list_size)


def payload_of(row: dict[str, Any]) -> dict[str, Any]:
    """The Qdrant payload of a chunk row: every column but the vector, metadata as an object."""
    payload = {k: row[k] for k in PAYLOAD_COLUMNS}
    payload["metadata"] = json.loads(row["metadata"] or "{}")
    return payload
