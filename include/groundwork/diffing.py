"""Compare two versions of an index: config changes, documents and chunks added and removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from groundwork.settings import Settings
from groundwork.snapshots import registry_for
from groundwork.versions import VersionStore

__all__ = ["VersionDiff", "diff_versions"]


@dataclass
class VersionDiff:
    index: str
    old: str
    new: str
    config_changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    documents_added: list[str] = field(default_factory=list)
    documents_removed: list[str] = field(default_factory=list)
    documents_changed: list[str] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_kept: int = 0

    def describe(self, limit: int = 20) -> str:
        lines = [f"{self.index}: {self.old} -> {self.new}"]
        lines.append(f"  config changes: {len(self.config_changes) or 'none'}")
        lines += [f"    {key}: {old!r} -> {new!r}" for key, old, new in self.config_changes]
        for label, items in (
            ("documents added", self.documents_added),
            ("documents removed", self.documents_removed),
            ("documents changed", self.documents_changed),
        ):
            lines.append(f"  {label}: {len(items)}")
            lines += [f"    {d}" for d in items[:limit]]
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit} more")
        lines.append(f"  chunks: +{self.chunks_added} -{self.chunks_removed} ={self.chunks_kept}")
        return "\n".join(lines)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def _table(settings: Settings, store: VersionStore, version: str) -> Any:
    path = store.chunks_path(version)
    if not path.is_file():
        registry_for(settings).restore(store.index, version, store.version_dir(version))
    return pq.read_table(path, columns=["chunk_id", "doc_id", "doc_hash"])


def diff_versions(settings: Settings, index: str, old: str, new: str) -> VersionDiff:
    store = VersionStore(settings, index)
    m_old, m_new = store.manifest(old), store.manifest(new)
    a, b = _flatten(m_old.effective_config), _flatten(m_new.effective_config)
    changes = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    t_old, t_new = _table(settings, store, old), _table(settings, store, new)
    docs_old = dict(zip(t_old.column("doc_id").to_pylist(), t_old.column("doc_hash").to_pylist(), strict=True))
    docs_new = dict(zip(t_new.column("doc_id").to_pylist(), t_new.column("doc_hash").to_pylist(), strict=True))
    chunks_old, chunks_new = set(t_old.column("chunk_id").to_pylist()), set(t_new.column("chunk_id").to_pylist())
    return VersionDiff(
        index=index,
        old=old,
        new=new,
        config_changes=changes,
        documents_added=sorted(set(docs_new) - set(docs_old)),
        documents_removed=sorted(set(docs_old) - set(docs_new)),
        documents_changed=sorted(d for d in set(docs_old) & set(docs_new) if docs_old[d] != docs_new[d]),
        chunks_added=len(chunks_new - chunks_old),
        chunks_removed=len(chunks_old - chunks_new),
        chunks_kept=len(chunks_old & chunks_new),
    )
