"""The pipeline over the real documents of ../shared/corpus (skipped when it is not beside the checkout)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from groundwork.config import parse_index
from groundwork.pipeline import run_index
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, shared_corpus

pytestmark = pytest.mark.corpus


def test_every_format_of_the_corpus_flows_or_is_skipped_with_a_reason(
    settings: Settings, memory_target: QdrantTarget
) -> None:
    corpus = shared_corpus()
    cfg = parse_index(
        {
            "name": "corpus",
            "sources": [
                {
                    "name": "examples",
                    "type": "files",
                    "path": str(corpus),
                    "include": ["*", "pdf/*", "eml/*"],
                    "exclude": ["book-war-and-peace-1p.txt", "example-10k.html"],  # the slowest two; same formats
                }
            ],
            "qdrant": {"location": ":memory:"},
        }
    )
    result = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    table = pq.read_table(VersionStore(settings, "corpus").chunks_path(result.version))
    suffixes = Counter(Path(u).suffix for u in set(table.column("uri").to_pylist()))
    for fmt in (".pdf", ".html", ".md", ".docx", ".pptx", ".xlsx", ".eml", ".epub", ".odt", ".rst", ".txt"):
        assert suffixes[fmt] >= 1, f"no chunk came from a {fmt} file"
    skipped = {Path(s["uri"]).name: s["error_type"] for s in result.manifest.skipped}
    assert skipped["empty.txt"] == "EmptyFile"
    assert skipped["fake-text-all-whitespace.txt"] == "NoText"
    assert skipped["simple.json"] == "UnsupportedFileType"
    assert max(table.column("token_count").to_pylist()) <= 64  # the fake tokenizer's limit
    assert all(table.column("chunk_id").is_valid())
    pages = [p for p, u in zip(table.column("page").to_pylist(), table.column("uri").to_pylist(), strict=True)
             if u.endswith(".pdf")]  # fmt: skip
    assert any(p and p > 1 for p in pages)
