"""Query an index through its alias, as a RAG application does: dense or hybrid.

``dense`` ranks by the embedding; ``hybrid`` fuses the dense ranking with a BM25
ranking over the ``bm25`` sparse vectors (present when the index's
``search_mode`` is ``hybrid``) by reciprocal rank fusion, in Qdrant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qdrant_client import QdrantClient, models

from groundwork import sparse
from groundwork.embedding import Embedder
from groundwork.errors import ConfigError
from groundwork.vectorstore import DENSE, SPARSE

__all__ = ["Hit", "search"]


@dataclass(frozen=True)
class Hit:
    score: float
    chunk_id: str
    payload: dict[str, Any]


def _named_vectors(client: QdrantClient, collection: str) -> bool:
    return isinstance(client.get_collection(collection).config.params.vectors, dict)


def search(
    client: QdrantClient, index: str, embedder: Embedder, query: str, limit: int = 5, mode: str = "dense"
) -> list[Hit]:
    """The ``limit`` chunks nearest to ``query`` in the live version of ``index``."""
    vector = embedder.encode([query])[0].tolist()
    named = _named_vectors(client, index)
    if mode == "hybrid":
        if not named:
            raise ConfigError(
                f"index {index!r} was published without sparse vectors: set `search_mode: hybrid` in its file "
                "and refresh it to search in hybrid mode"
            )
        indices, values = sparse.query_vector(query)
        response = client.query_points(
            index,
            prefetch=[
                models.Prefetch(query=vector, using=DENSE, limit=limit * 4),
                models.Prefetch(query=models.SparseVector(indices=indices, values=values), using=SPARSE,
                                limit=limit * 4),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=limit,
            with_payload=True,
        )  # fmt: skip
    else:
        response = client.query_points(
            index, query=vector, using=DENSE if named else None, limit=limit, with_payload=True
        )
    return [Hit(float(p.score), str(p.id), dict(p.payload or {})) for p in response.points]
