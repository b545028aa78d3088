"""The embedding cache: keyed by model identity and text hash, shared across runs and processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np

from groundwork.embedding_cache import CacheStats, EmbeddingCache, embed_with_cache
from tests.conftest import FakeEmbedder


def test_same_text_is_embedded_once(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    embedder = FakeEmbedder()
    stats = CacheStats()
    first = embed_with_cache(embedder, cache, ["a b", "c d", "a b"], stats)
    assert embedder.encoded == ["a b", "c d"]
    assert (stats.embedded, stats.reused) == (2, 1)
    again = embed_with_cache(embedder, EmbeddingCache(tmp_path / "cache.sqlite"), ["c d", "a b"], stats)
    assert embedder.encoded == ["a b", "c d"]
    np.testing.assert_array_equal(again, first[[1, 0]])
    assert first.dtype == np.float32


def test_cache_is_keyed_by_model(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    embed_with_cache(FakeEmbedder(model_id="m1"), cache, ["same text"])
    other = FakeEmbedder(model_id="m2")
    embed_with_cache(other, cache, ["same text"])
    assert other.encoded == ["same text"]
    assert cache.count("m1") == 1 and cache.count("m2") == 1


def test_empty_input_gives_empty_matrix(tmp_path: Path) -> None:
    out = embed_with_cache(FakeEmbedder(dim=8), EmbeddingCache(tmp_path / "c.sqlite"), [])
    assert out.shape == (0, 8)


def _writer(path: str, offset: int) -> None:
    embed_with_cache(FakeEmbedder(), EmbeddingCache(Path(path)), [f"text {i}" for i in range(offset, offset + 300)])


def test_concurrent_writers_share_one_cache(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    EmbeddingCache(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), o)) for o in (0, 150)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert EmbeddingCache(path).count("fake@1:norm") == 450
