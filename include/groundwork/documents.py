"""Source documents: what discovery lists, with stable ids and content hashes.

A :class:`SourceDocument` is a reference, not the content: a file document
carries its path, a row document carries its rendered text (rows are small and
already read). Batches of documents are written as JSON Lines so that tasks pass
paths, not data. Ids are stable strings (``<source>:<relative path or key>``);
hashes are SHA-256 over the bytes (files) or over the rendered text plus
metadata (rows), salted with the source settings that change the result.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CHUNK_NAMESPACE",
    "SourceDocument",
    "chunk_id",
    "read_documents",
    "sha256_text",
    "write_documents",
]

# Fixed namespace: chunk and point ids are uuid5 of stable keys, so a retry
# overwrites instead of duplicating.
CHUNK_NAMESPACE = uuid.UUID("5b0c1c8e-8f0e-4c4a-9b6e-67726f756e64")


@dataclass(frozen=True)
class SourceDocument:
    """One document of one source, as listed by discovery."""

    doc_id: str
    source: str
    uri: str
    title: str
    content_hash: str
    kind: Literal["file", "row"]
    modified_at: str | None = None  # ISO-8601 UTC
    path: str | None = None
    text: str | None = None
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, line: str) -> SourceDocument:
        return cls(**json.loads(line))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_id(doc_id: str, seq: int, text_hash: str) -> str:
    """Deterministic chunk id: the same document, position and text give the same id."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\x1f{seq}\x1f{text_hash}"))


def write_documents(path: Path, documents: Iterable[SourceDocument]) -> int:
    """Write documents as JSON Lines (atomically); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for doc in documents:
            fh.write(doc.to_json() + "\n")
            count += 1
    tmp.replace(path)
    return count


def read_documents(path: Path) -> Iterator[SourceDocument]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield SourceDocument.from_json(line)
