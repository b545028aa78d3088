"""The embedding cache: the same text is never embedded twice by the same model.

Vectors are stored in one SQLite file keyed by (model identity, SHA-256 of the
chunk text). It is shared by every index, run and version on the machine, and
safe for concurrent writers (WAL mode, a busy timeout, INSERT OR IGNORE: two
processes that embed the same text store one row). :func:`embed_with_cache`
is the only way the pipeline embeds.

It does not expire entries; delete the file to reclaim space (vectors are also
kept in every version's chunk table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundwork.documents import sha256_text
from groundwork.embedding import Embedder, Vectors

__all__ = ["CacheStats", "EmbeddingCache", "embed_with_cache"]

_LOOKUP_CHUNK = 500


@dataclass
class CacheStats:
    """How many texts were embedded now and how many came from the cache."""

    embedded: int = 0
    reused: int = 0


class EmbeddingCache:
    """SQLite-backed map from (model_id, text hash) to a float32 vector."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors ("
                " model_id TEXT NOT NULL, text_hash TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,"
                " PRIMARY KEY (model_id, text_hash)) WITHOUT ROWID"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=120)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, Vectors]:
        found: dict[str, Vectors] = {}
        with self._connect() as conn:
            for start in range(0, len(hashes), _LOOKUP_CHUNK):
                part = list(hashes[start : start + _LOOKUP_CHUNK])
                marks = ",".join("?" * len(part))
                rows = conn.execute(
                    f"SELECT text_hash, vector FROM vectors WHERE model_id = ? AND text_hash IN ({marks})",
                    [model_id, *part],
                )
                for text_hash, blob in rows:
                    found[text_hash] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, model_id: str, items: dict[str, Vectors]) -> None:
        with self._connect() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO vectors (model_id, text_hash, dim, vector) VALUES (?, ?, ?, ?)",
                [(model_id, h, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes()) for h, v in items.items()],
            )

    def count(self, model_id: str | None = None) -> int:
        with self._connect() as conn:
            if model_id is None:
                return int(conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM vectors WHERE model_id = ?", [model_id]).fetchone()[0])


def embed_with_cache(
    embedder: Embedder, cache: EmbeddingCache | None, texts: Sequence[str], stats: CacheStats | None = None
) -> Vectors:
    """Vectors for ``texts`` in order, embedding only texts the cache has not seen."""
    stats = stats if stats is not None else CacheStats()
    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    hashes = [sha256_text(t) for t in texts]
    known = cache.get_many(embedder.model_id, sorted(set(hashes))) if cache else {}
    todo: dict[str, str] = {}
    for h, t in zip(hashes, texts, strict=True):
        if h not in known:
            todo.setdefault(h, t)
    if todo:
        fresh = embedder.encode(list(todo.values()))
        new = dict(zip(todo.keys(), fresh, strict=True))
        if cache:
            cache.put_many(embedder.model_id, new)
        known.update(new)
    stats.embedded += len(todo)
    stats.reused += len(texts) - len(todo)
    return np.stack([known[h] for h in hashes]).astype(np.float32, copy=False)
