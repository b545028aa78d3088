"""Shared fixtures: a tiny deterministic embedder, isolated settings, an in-memory Qdrant.

The fake embedder stands in where the model is not the point (speed, determinism):
tokens are whitespace-separated words, vectors are normalised bags of hashed words,
so texts that share words are near each other. Tests marked ``model`` use the
real all-MiniLM-L6-v2 instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from groundwork.config import IndexConfig, parse_index
from groundwork.offline import set_offline_env
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, reset_memory_clients

set_offline_env()

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "unstructured-example-docs"

_WORD = re.compile(r"\S+")


class FakeTokenizer:
    """Whitespace tokens; ``max_tokens`` small enough that splitting is exercised."""

    def __init__(self, max_tokens: int = 64) -> None:
        self._max = max_tokens

    @property
    def max_tokens(self) -> int:
        return self._max

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class FakeEmbedder:
    """Deterministic 32-d bag-of-hashed-words vectors; counts what it encodes."""

    def __init__(self, dim: int = 32, max_tokens: int = 64, model_id: str = "fake@1:norm") -> None:
        self._dim = dim
        self._tokenizer = FakeTokenizer(max_tokens)
        self._model_id = model_id
        self.encoded: list[str] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dim

    @property
    def tokenizer(self) -> FakeTokenizer:
        return self._tokenizer

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        self.encoded.extend(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.strip(".,:;!?()").encode(), digest_size=4).digest(), "big")
                out[i, h % self._dim] += 1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "data"
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    return Settings(home=home, indexes_dir=indexes)


@pytest.fixture
def memory_target() -> Iterator[QdrantTarget]:
    reset_memory_clients()
    yield QdrantTarget(kind="memory")
    reset_memory_clients()


DOCS = {
    "alpha.md": """
        # Alpha guide

        Alpha widgets are assembled from three brass gears and one spring.

        ## Maintenance

        Oil the alpha gears every month and replace the spring every year.
        """,
    "beta.md": """
        # Beta notes

        Beta gadgets run on solar power and store energy in a small battery.

        ## Safety

        Never open the beta battery case while the gadget is charging.
        """,
    "gamma.txt": """
        Gamma reports are written every quarter by the finance team.
        They summarise revenue, costs and the forecast for the next quarter.
        """,
}


def write_docs(folder: Path, docs: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (docs or DOCS).items():
        (folder / name).write_text(textwrap.dedent(text).strip() + "\n", encoding="utf-8")
    return folder


def make_index(tmp_path: Path, name: str = "demo", **overrides: Any) -> IndexConfig:
    """An index over a folder of small documents in ``tmp_path/docs`` (written if missing)."""
    docs = tmp_path / "docs"
    if not docs.exists():
        write_docs(docs)
    raw: dict[str, Any] = {
        "name": name,
        "sources": [{"name": "docs", "type": "files", "path": str(docs), "languages": ["eng"]}],
        "chunking": {"strategy": "by_title", "max_characters": 400, "new_after_n_chars": 300},
        "qdrant": {"location": ":memory:"},
        # DVC snapshots cost seconds per version; tests that are about them turn them on.
        "snapshots": {"enabled": False},
        # Three documents: deleting one is 33%, over the default breaker of 20%.
        "processing": {"max_delete_share": 0.5},
    }
    raw.update(overrides)
    return parse_index(raw)


def shared_corpus() -> Path:
    if not SHARED_CORPUS.is_dir():
        pytest.skip("../shared/corpus is not beside this checkout")
    return SHARED_CORPUS


def real_model_available() -> bool:
    return os.environ.get("GROUNDWORK_SKIP_MODEL") != "1"
