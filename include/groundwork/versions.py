"""Versions of an index on disk: ids, manifests, the live pointer, run folders.

A version id is sortable and content-addressed: ``<build time>-<hash>`` where
the hash covers the config fingerprint, the model identity and the sorted
chunk ids, e.g. ``20261125T183000Z-3f9a1c2e``. A version folder holds the
immutable ``chunks.parquet`` and ``manifest.json``; ``live.json`` names the
version the alias points at and is written only after the alias moved.

This module owns the layout of ``<home>/indexes/<index>/``; it does not talk to
Qdrant.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from groundwork.errors import NotFoundError
from groundwork.settings import Settings

__all__ = ["LiveState", "Manifest", "VersionStore", "collection_name", "make_version_id", "safe_run_id"]

_VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def make_version_id(build_time: datetime, fingerprint: str, model_id: str, chunk_ids: Iterable[str]) -> str:
    digest = hashlib.sha256(f"{fingerprint}\n{model_id}\n".encode())
    for cid in sorted(chunk_ids):
        digest.update(cid.encode())
        digest.update(b"\n")
    stamp = build_time.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{digest.hexdigest()[:8]}"


def collection_name(index: str, version: str) -> str:
    return f"{index}__{version}"


def safe_run_id(run_id: str) -> str:
    """A run id usable as a folder name (Airflow's contain ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


class Manifest(BaseModel):
    """What a version is made of, how and when; written beside its chunk table."""

    model_config = ConfigDict(extra="allow")

    index: str
    version: str
    parent: str | None
    created_at: str
    run_id: str
    trigger: str
    config_fingerprint: str
    effective_config: dict[str, Any]
    model_id: str
    dimension: int
    collection: str
    counts: dict[str, dict[str, int]]
    timings_s: dict[str, float] = Field(default_factory=dict)
    skipped: list[dict[str, Any]] = Field(default_factory=list)
    source_digests: dict[str, str] = Field(default_factory=dict)
    validation: dict[str, Any] | None = Field(default=None, description="the quality gate's verdict")
    snapshot: dict[str, Any] | None = Field(default=None, description="DVC tag, git revision and remote")
    rebased_from: str | None = Field(default=None, description="the version the run planned against, if rebased")
    forced_delete: str | None = Field(default=None, description="why the delete breaker was overridden")
    window: dict[str, str] | None = Field(default=None, description="the run's time window {start, end}, if any")
    overrides: dict[str, Any] = Field(default_factory=dict, description="the run's overrides of the index file")


class LiveState(BaseModel):
    """The version behind the index's alias."""

    version: str
    collection: str
    moved_at: str


class VersionStore:
    """Paths and records of one index's versions and runs."""

    def __init__(self, settings: Settings, index: str) -> None:
        self.index = index
        self.root = settings.index_dir(index)

    def version_dir(self, version: str) -> Path:
        return self.root / "versions" / version

    def chunks_path(self, version: str) -> Path:
        return self.version_dir(version) / "chunks.parquet"

    def manifest_path(self, version: str) -> Path:
        return self.version_dir(version) / "manifest.json"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / safe_run_id(run_id)

    def versions(self) -> list[str]:
        base = self.root / "versions"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if _VERSION_RE.match(p.name) and (p / "manifest.json").is_file())

    def manifest(self, version: str) -> Manifest:
        path = self.manifest_path(version)
        if not path.is_file():
            raise NotFoundError(f"index {self.index!r} has no version {version!r}; known: {self.versions() or 'none'}")
        return Manifest.model_validate_json(path.read_text())

    def write_manifest(self, manifest: Manifest) -> Path:
        path = self.manifest_path(manifest.version)
        write_json_atomic(path, manifest.model_dump(mode="json"))
        return path

    def update_manifest(self, version: str, **fields: Any) -> Manifest:
        """Add or replace top-level manifest fields (timings merge)."""
        data = self.manifest(version).model_dump(mode="json")
        timings = fields.pop("timings_s", None)
        data.update(fields)
        if timings:
            data["timings_s"] = {**data.get("timings_s", {}), **timings}
        write_json_atomic(self.manifest_path(version), data)
        return Manifest.model_validate(data)

    def live(self) -> LiveState | None:
        path = self.root / "live.json"
        return LiveState.model_validate_json(path.read_text()) if path.is_file() else None

    def set_live(self, version: str, collection: str) -> LiveState:
        state = LiveState(version=version, collection=collection, moved_at=datetime.now(UTC).isoformat())
        write_json_atomic(self.root / "live.json", state.model_dump())
        return state


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
