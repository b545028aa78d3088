"""The real all-MiniLM-L6-v2, loaded offline from its package: where the model is the point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from groundwork.config import EmbeddingConfig
from groundwork.embedding import load_embedder
from groundwork.pipeline import run_index
from groundwork.search import search
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, open_client
from tests.conftest import make_index

pytestmark = pytest.mark.model


def test_model_loads_offline_and_normalises() -> None:
    embedder = load_embedder(EmbeddingConfig())
    vectors = embedder.encode(["grounding data for RAG", "a recipe for pancakes"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.model_id.startswith("all-MiniLM-L6-v2@") and embedder.model_id.endswith(":norm")
    raw = load_embedder(EmbeddingConfig(normalize=False))
    assert raw.model_id != embedder.model_id


def test_real_model_finds_the_relevant_document(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    embedder = load_embedder(cfg.embedding)
    run_index(cfg, settings, embedder=embedder, target=memory_target)
    with open_client(memory_target) as client:
        hits = search(client, "demo", embedder, "How often should I replace the spring?", limit=3)
        assert hits[0].payload["doc_id"] == "docs:alpha.md"
        hits = search(client, "demo", embedder, "quarterly revenue and forecast", limit=3)
        assert hits[0].payload["doc_id"] == "docs:gamma.txt"


def test_token_sorted_batches_give_the_vectors_of_one_plain_call_in_order() -> None:
    embedder = load_embedder(EmbeddingConfig(batch_size=4))
    words = "index version chunk vector alias qdrant snapshot rollback airflow".split()
    # Lengths that character order and token order disagree on, more texts than one batch.
    texts = [" ".join(words[(i * 7) % 9 :] + ["tokenisation"] * (i % 5)) + f" {i}" for i in range(11)]
    ours = embedder.encode(texts)
    plain = embedder.model.encode(texts, batch_size=4, normalize_embeddings=True)
    assert ours.shape == (11, 384) and ours.dtype == np.float32
    assert np.allclose(ours, plain, atol=1e-5)
    assert not np.allclose(ours[0], ours[1])  # rows are not shuffled into the same vector
