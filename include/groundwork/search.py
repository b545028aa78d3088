"""Query an index through its alias: what a RAG application does, for the CLI and tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qdrant_client import QdrantClient

from groundwork.embedding import Embedder

__all__ = ["Hit", "search"]


@dataclass(frozen=True)
class Hit:
    score: float
    chunk_id: str
    payload: dict[str, Any]


def search(client: QdrantClient, index: str, embedder: Embedder, query: str, limit: int = 5) -> list[Hit]:
    """The ``limit`` chunks nearest to ``query`` in the live version of ``index``."""
    vector = embedder.encode([query])[0]
    response = client.query_points(index, query=vector.tolist(), limit=limit, with_payload=True)
    return [Hit(float(p.score), str(p.id), dict(p.payload or {})) for p in response.points]
