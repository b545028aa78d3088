"""Lexical sparse vectors, BM25-style, computed by groundwork itself.

Each chunk gets a sparse vector over hashed word ids whose weights are BM25's
term-frequency part (``k1``, ``b``, and the version's average chunk length);
the IDF part is applied at query time by Qdrant (``Modifier.IDF`` on the
sparse vector), or by :func:`idf` for in-memory evaluation, with Qdrant's
formula. Queries are plain sets of word ids. Dense and sparse results are
fused with reciprocal rank fusion (:func:`rrf`), as Qdrant's ``Fusion.RRF``.

Pure functions; no model, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["K1", "B", "average_length", "doc_vector", "idf", "query_vector", "rrf", "terms"]

K1 = 1.2
B = 0.75
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have in is it its of on or that the this to was were will with".split()
)


def terms(text: str) -> list[str]:
    """Lower-cased words of two or more characters, stopwords dropped."""
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


def term_id(term: str) -> int:
    """A stable 32-bit id for a term (the sparse vector's index)."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")


def average_length(texts: Iterable[str]) -> float:
    lengths = [len(terms(t)) for t in texts]
    return (sum(lengths) / len(lengths)) if lengths else 1.0


def doc_vector(text: str, avg_len: float) -> tuple[list[int], list[float]]:
    """BM25 term-frequency weights of a chunk, as (indices, values) sorted by index."""
    words = terms(text)
    counts = Counter(term_id(w) for w in words)
    norm = K1 * (1 - B + B * len(words) / max(avg_len, 1e-9))
    items = sorted((i, tf * (K1 + 1) / (tf + norm)) for i, tf in counts.items())
    return [i for i, _ in items], [float(v) for _, v in items]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    ids = sorted({term_id(w) for w in terms(text)})
    return ids, [1.0] * len(ids)


def idf(doc_freq: int, n_docs: int) -> float:
    """Qdrant's IDF: ln((N - n + 0.5) / (n + 0.5) + 1)."""
    return math.log((n_docs - doc_freq + 0.5) / (doc_freq + 0.5) + 1)


def rrf(rankings: Sequence[Sequence[str]], limit: int) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of ranked id lists, scored 1 / (2 + zero-based rank) as Qdrant does."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + 1.0 / (2 + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
