"""Index definitions: one YAML file per index, loaded into typed models.

An index file names its sources, chunking strategy, enrichment, embedding model,
Qdrant target, batching and schedule. Loading validates everything at once and
raises :class:`~groundwork.errors.ConfigError` naming the file, the field and
what is allowed. Relative paths in a file are relative to the file's folder.

This module only parses and validates; it opens no source and loads no model.
Source entries are described in :mod:`groundwork.source_config` (re-exported here).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from groundwork.errors import ConfigError
from groundwork.source_config import (
    NAME_PATTERN,
    ColumnTimePartition,
    FileSourceConfig,
    FileTimePartition,
    SourceConfig,
    SqlSourceConfig,
    StrictModel,
    TableSourceConfig,
)

__all__ = [
    "ChunkingConfig",
    "ColumnTimePartition",
    "EmbeddingConfig",
    "EvaluationConfig",
    "EnrichmentConfig",
    "FileSourceConfig",
    "FileTimePartition",
    "IndexConfig",
    "ProcessingConfig",
    "QdrantConfig",
    "RetentionConfig",
    "SnapshotConfig",
    "SourceConfig",
    "SqlSourceConfig",
    "TableSourceConfig",
    "ValidationConfig",
    "discover_index_files",
    "load_index",
    "load_indexes",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class ChunkingConfig(StrictModel):
    """How documents are cut into chunks.

    ``by_title`` and ``basic`` are unstructured's chunkers (sizes in characters);
    ``tokens`` cuts fixed windows counted with the embedding model's tokenizer.
    Whatever the strategy, a chunk longer than the model's sequence length is
    split further on token boundaries, never truncated.
    """

    strategy: Literal["by_title", "basic", "tokens"] = "by_title"
    max_characters: int = Field(default=1000, gt=0)
    new_after_n_chars: int | None = Field(default=800, gt=0)
    overlap: int = Field(default=0, ge=0)
    overlap_all: bool = False
    combine_text_under_n_chars: int | None = Field(default=200, ge=0)
    multipage_sections: bool = True
    max_tokens: int = Field(default=200, gt=0, description="tokens strategy: window size")
    overlap_tokens: int = Field(default=32, ge=0, description="tokens strategy: overlap between windows")

    @model_validator(mode="after")
    def _consistent(self) -> ChunkingConfig:
        if self.overlap >= self.max_characters:
            raise ValueError("overlap must be smaller than max_characters")
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        if self.new_after_n_chars is not None and self.new_after_n_chars > self.max_characters:
            raise ValueError("new_after_n_chars must not exceed max_characters")
        return self


class EnrichmentConfig(StrictModel):
    """Metadata added to every chunk beyond what groundwork always records."""

    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    detect_language: bool = True


class EmbeddingConfig(StrictModel):
    """The sentence-transformers model and how it is run."""

    model: str = DEFAULT_MODEL
    batch_size: int = Field(default=32, gt=0, le=4096)
    normalize: bool = True
    device: str = Field(default="cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")
    precision: Literal["fp32", "int8"] = Field(
        default="fp32", description="int8: dynamic quantization of the linear layers (CPU); faster, slightly different"
    )


PayloadIndexType = Literal["keyword", "integer", "float", "bool", "datetime", "text", "uuid", "geo"]


class QdrantConfig(StrictModel):
    """Where versions are published.

    Exactly one of: ``path`` (a local folder; the default is the data folder's
    ``qdrant/``), ``location: ":memory:"`` (tests), or ``url`` (a server, with
    its API key from ``api_key_env``). Under Airflow, ``connection_id`` names a
    Connection that overrides these when it exists.

    The collection layout (shards, replication, write consistency, HNSW,
    payload indexes) and the retries apply to a server only: local mode has
    one shard, searches exactly and ignores them.
    """

    path: Path | None = None
    location: Literal[":memory:"] | None = None
    url: str | None = None
    api_key_env: str | None = "QDRANT_API_KEY"
    connection_id: str | None = "qdrant_default"
    prefer_grpc: bool = False
    grpc_port: int = Field(default=6334, gt=0, le=65535)
    timeout_s: int = Field(default=60, gt=0)
    upload_batch_size: int = Field(default=256, gt=0, le=10_000)
    distance: Literal["cosine", "dot", "euclid"] = "cosine"
    # server: collection layout
    shard_number: int | None = Field(default=None, ge=1, description="server default when unset (1)")
    replication_factor: int | None = Field(default=None, ge=1, description="copies of each shard (cluster)")
    write_consistency_factor: int | None = Field(
        default=None, ge=1, description="replicas that must confirm a write; at most replication_factor"
    )
    payload_indexes: dict[str, PayloadIndexType] = Field(
        default_factory=lambda: dict[str, PayloadIndexType]({"doc_id": "keyword", "source": "keyword"}),
        description="payload field (dotted for metadata, e.g. metadata.team) -> index type, for filtered search",
    )
    hnsw_m: int = Field(default=16, ge=0, le=256, description="HNSW links per node once uploaded (0: no HNSW)")
    hnsw_ef_construct: int = Field(default=100, ge=4, le=4096)
    defer_hnsw: bool = Field(default=True, description="build HNSW after the bulk upload (m=0 while uploading)")
    index_wait_s: float = Field(
        default=600, ge=0, description="wait this long for the collection to turn green before the alias moves"
    )
    # server: transient errors (connection, timeout, 5xx) are retried with exponential backoff
    retries: int = Field(default=5, ge=0, le=20, description="retries after the first attempt")
    retry_backoff_s: float = Field(default=0.5, gt=0, le=60, description="first wait; doubles each retry")
    retry_max_backoff_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("payload_indexes")
    @classmethod
    def _payload_fields(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", k)]
        if bad:
            raise ValueError(f"payload index fields must be (dotted) identifiers, got: {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> QdrantConfig:
        if sum(x is not None for x in (self.path, self.location, self.url)) > 1:
            raise ValueError("set only one of path, location and url")
        if (self.write_consistency_factor or 1) > (self.replication_factor or 1):
            raise ValueError("write_consistency_factor must not exceed replication_factor")
        return self


class ValidationConfig(StrictModel):
    """The quality gate's thresholds (see :mod:`groundwork.validation`)."""

    enabled: bool = True
    min_chars: int = Field(default=1, ge=0)
    max_chars: int = Field(default=8000, gt=0)
    max_duplicate_share: float = Field(default=0.3, ge=0, le=1, description="chunks repeating another's text")
    max_no_chunk_share: float = Field(default=0.2, ge=0, le=1, description="documents that produced no chunk")
    max_quarantine_share: float = Field(default=0.3, ge=0, le=1, description="documents that could not be parsed")
    required_metadata: list[str] = Field(default_factory=list, description="metadata fields every chunk must have")
    allowed_languages: list[str] | None = Field(default=None, description="ISO 639-3 codes; unset allows any")
    norm_tolerance: float = Field(default=1e-3, gt=0, description="for normalised vectors: |norm - 1| allowed")
    max_chunk_drift: float | None = Field(default=0.5, ge=0, description="relative change of the chunk count vs live")
    max_document_drift: float | None = Field(default=0.5, ge=0, description="relative change of documents vs live")

    @model_validator(mode="after")
    def _bounds(self) -> ValidationConfig:
        if self.min_chars > self.max_chars:
            raise ValueError("min_chars must not exceed max_chars")
        return self


class EvaluationConfig(StrictModel):
    """Golden queries and the promotion gate (see :mod:`groundwork.evaluation`)."""

    golden: Path | None = Field(default=None, description="golden query file (YAML or JSON Lines)")
    k: int = Field(default=10, gt=0, le=100)
    mode: Literal["dense", "hybrid"] = "dense"
    tolerance: float = Field(default=0.02, ge=0, le=1, description="largest allowed drop of any mean metric")


class RetentionConfig(StrictModel):
    """How many versions stay in Qdrant for instant rollback (older ones stay restorable from DVC)."""

    keep: int = Field(default=3, ge=1, description="versions kept as collections besides the live one")


class SnapshotConfig(StrictModel):
    """DVC snapshots of every version before it goes live."""

    enabled: bool = True


class ProcessingConfig(StrictModel):
    """How a run's documents are split into batches (mapped tasks under Airflow), and its safety limits."""

    batch_size: int = Field(default=50, gt=0, description="documents per batch")
    max_batches: int = Field(default=256, gt=0, le=1024, description="bounded by Airflow's map length")
    max_parallel: int = Field(default=2, gt=0, le=256, description="batches processed at once in one run")
    queue: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Airflow queue of the process (embedding) tasks, e.g. a Celery queue served by GPU workers; "
        "unset: the default queue",
    )
    max_delete_share: float = Field(
        default=0.2, ge=0, le=1, description="delete circuit breaker: largest share of documents one run may delete"
    )


class IndexConfig(StrictModel):
    """One index: where its documents come from and how its versions are built."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    schedule: str | None = Field(default="@daily", description="cron expression, preset, or null")
    sources: list[SourceConfig] = Field(min_length=1)
    chunking: ChunkingConfig = ChunkingConfig()
    enrichment: EnrichmentConfig = EnrichmentConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    qdrant: QdrantConfig = QdrantConfig()
    processing: ProcessingConfig = ProcessingConfig()
    validation: ValidationConfig = ValidationConfig()
    retention: RetentionConfig = RetentionConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    search_mode: Literal["dense", "hybrid"] = Field(default="dense", description="default mode of groundwork search")
    snapshots: SnapshotConfig = SnapshotConfig()
    tags: list[str] = Field(default_factory=list)
    source_file: Path | None = Field(default=None, exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[Any]) -> list[Any]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources

    def source(self, name: str) -> FileSourceConfig | TableSourceConfig | SqlSourceConfig:
        for src in self.sources:
            if src.name == name:
                return src
        raise ConfigError(f"index {self.name!r} has no source {name!r}; it has: {self.source_names}")

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.sources]

    def fingerprint_payload(self) -> dict[str, Any]:
        """The settings that decide chunk contents and vectors (not where they go).

        Source settings are not part of it: how a source renders or partitions a
        document is folded into that document's content hash instead, so a change
        there re-processes only the documents it touches.
        """
        return {
            "chunking": self.chunking.model_dump(mode="json"),
            "enrichment": self.enrichment.model_dump(mode="json"),
            "embedding": self.embedding.model_dump(mode="json", exclude={"batch_size", "device"}),
        }

    def fingerprint(self) -> str:
        """A short, stable hash of :meth:`fingerprint_payload`."""
        blob = json.dumps(self.fingerprint_payload(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message += f"; allowed fields here: {', '.join(_allowed_fields(error['loc'][:-1], model))}"
    return f"  {where}: {message}"


def _allowed_fields(loc: tuple[Any, ...], model: type[BaseModel]) -> list[str]:
    """Best effort: the field names of the model at ``loc``."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            # a discriminated union member: named by its tag in the location
            current = {"files": FileSourceConfig, "table": TableSourceConfig, "sql": SqlSourceConfig}.get(part)
            continue
        annotation = field.annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    fields = getattr(current, "model_fields", {})
    return sorted(f for f in fields if f != "source_file") or ["(see the documentation)"]


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative source and Qdrant paths relative to the index file's folder."""
    for src in raw.get("sources") or []:
        if isinstance(src, dict) and isinstance(src.get("path"), str):
            src["path"] = str((base / src["path"]).resolve())
    qdrant = raw.get("qdrant")
    if isinstance(qdrant, dict) and isinstance(qdrant.get("path"), str):
        qdrant["path"] = str((base / qdrant["path"]).resolve())
    evaluation = raw.get("evaluation")
    if isinstance(evaluation, dict) and isinstance(evaluation.get("golden"), str):
        evaluation["golden"] = str((base / evaluation["golden"]).resolve())
    return raw


def parse_index(raw: Any, source_file: Path | None = None) -> IndexConfig:
    """Validate an already-parsed mapping; errors name ``source_file``."""
    label = str(source_file) if source_file else "<index definition>"
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: expected a mapping of index settings, got {type(raw).__name__}")
    if source_file is not None:
        raw = _resolve_paths(dict(raw), source_file.parent)
        raw["source_file"] = source_file
    try:
        return IndexConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, IndexConfig) for e in exc.errors()]
        raise ConfigError(f"{label}: invalid index definition\n" + "\n".join(lines)) from None


def load_index(path: str | Path) -> IndexConfig:
    """Load and validate one index file."""
    file = Path(path).resolve()
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: index file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    config = parse_index(raw, file)
    if file.stem != config.name:
        raise ConfigError(f"{file}: name {config.name!r} must match the file name {file.stem!r}")
    return config


def discover_index_files(indexes_dir: str | Path) -> list[Path]:
    """The index files of a folder (``*.yaml`` / ``*.yml``), sorted."""
    folder = Path(indexes_dir)
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_indexes(indexes_dir: str | Path) -> dict[str, IndexConfig]:
    """Every index of a folder by name; the first invalid file raises."""
    indexes: dict[str, IndexConfig] = {}
    for path in discover_index_files(indexes_dir):
        config = load_index(path)
        if config.name in indexes:
            raise ConfigError(f"{path}: index {config.name!r} is also defined in {indexes[config.name].source_file}")
        indexes[config.name] = config
    return indexes
