"""Plan a refresh: discover every source, diff against the live version, cut batches.

The live version is the state. A document whose content hash matches the live
version's (and whose index settings did not change) is carried over with its
vectors; new and changed documents are written to batch files (JSON Lines) for
:mod:`groundwork.processing`; documents the live version has and the sources no
longer list are deleted. Sources outside a run's ``sources`` subset are
carried over whole.

A source that lists nothing while the live version has documents from it stops
the run (an empty or broken source is never read as "everything was deleted"),
and so does a run that would delete more than ``processing.max_delete_share``
of the index (the delete circuit breaker), unless forced with a reason. The
plan is written to ``<run>/plan.json``; tasks pass its path.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from groundwork.config import IndexConfig
from groundwork.documents import SourceDocument, write_documents
from groundwork.embedding import Embedder
from groundwork.errors import ConfigError, DeleteBreakerTripped, SourceError
from groundwork.sources import ConnectionResolver, discover
from groundwork.versions import VersionStore, write_json_atomic

__all__ = ["Plan", "plan_run", "read_plan"]


class Plan(BaseModel):
    """What one run will do; the contract between discover, process and assemble."""

    index: str
    run_id: str
    build_time: str
    trigger: str
    fingerprint: str
    model_id: str
    model_dimension: int
    model_max_tokens: int
    parent: str | None
    reprocess_all: bool
    counts: dict[str, int]
    batches: list[str]
    processed: list[str] = Field(description="doc ids of new and changed documents (in the batches)")
    carry_over: list[str] = Field(description="doc ids taken unchanged from the parent version")
    deleted: list[str]
    skipped: list[dict[str, Any]]
    source_digests: dict[str, str]
    timings_s: dict[str, float]
    forced_delete: str | None = Field(default=None, description="why the delete breaker was overridden")


def read_plan(path: Path) -> Plan:
    return Plan.model_validate_json(path.read_text())


def _live_documents(store: VersionStore, version: str) -> dict[str, tuple[str, str]]:
    """doc_id -> (doc_hash, source) of a version's chunk table."""
    table = pq.read_table(store.chunks_path(version), columns=["doc_id", "doc_hash", "source"])
    ids, hashes, sources = (table.column(c).to_pylist() for c in ("doc_id", "doc_hash", "source"))
    return {d: (h, s) for d, h, s in zip(ids, hashes, sources, strict=True)}


def _digest(docs: Sequence[SourceDocument]) -> str:
    digest = hashlib.sha256()
    for doc in sorted(docs, key=lambda d: d.doc_id):
        digest.update(f"{doc.doc_id}\x1f{doc.content_hash}\n".encode())
    return digest.hexdigest()[:16]


def plan_run(
    config: IndexConfig,
    store: VersionStore,
    *,
    run_id: str,
    embedder: Embedder,
    build_time: datetime | None = None,
    trigger: str = "manual",
    sources: Sequence[str] | None = None,
    force: bool = False,
    force_delete_reason: str | None = None,
    resolve_connection: ConnectionResolver | None = None,
) -> Path:
    """Discover, diff and batch; returns the path of the written plan.

    ``force`` re-processes every document. ``force_delete_reason`` lets a run
    delete more than ``processing.max_delete_share`` of the documents (or empty a
    source) and is recorded in the plan and the manifest.
    """
    model_id = embedder.model_id
    started = time.perf_counter()
    selected = list(sources) if sources else config.source_names
    unknown = sorted(set(selected) - set(config.source_names))
    if unknown:
        raise ConfigError(f"index {config.name!r} has no source(s) {unknown}; it has {config.source_names}")

    live = store.live()
    parent = live.version if live else None
    live_docs: dict[str, tuple[str, str]] = {}
    reprocess_all = force or parent is None
    if parent is not None:
        manifest = store.manifest(parent)
        # Another chunking/enrichment/model config means every document is re-chunked
        # (the embedding cache still spares texts it has seen).
        reprocess_all = (
            reprocess_all or manifest.config_fingerprint != config.fingerprint() or manifest.model_id != model_id
        )
        live_docs = _live_documents(store, parent)

    listed: list[SourceDocument] = []
    skipped: list[dict[str, Any]] = []
    digests: dict[str, str] = {}
    for name in selected:
        found = discover(config.source(name), resolve_connection=resolve_connection)
        had = sum(1 for _, src in live_docs.values() if src == name)
        if not found.documents and had and not force_delete_reason:
            raise SourceError(
                f"source {name!r} listed no documents but the live version {parent} has {had} from it; "
                "refusing to delete them all (fix the source, or force the run with a reason)"
            )
        listed.extend(found.documents)
        skipped.extend(s.to_dict() for s in found.skipped)
        digests[name] = _digest(found.documents)

    listed_ids = {d.doc_id for d in listed}
    todo: list[SourceDocument] = []
    new = changed = unchanged = 0
    for doc in listed:
        before = live_docs.get(doc.doc_id)
        if before is None:
            new += 1
            todo.append(doc)
        elif reprocess_all or before[0] != doc.content_hash:
            changed += 1
            todo.append(doc)
        else:
            unchanged += 1
    todo_ids = {t.doc_id for t in todo}
    carry = sorted(d for d in listed_ids if d in live_docs and d not in todo_ids)
    # Sources outside this run's subset keep every document they had.
    outside = sorted(d for d, (_, src) in live_docs.items() if src not in selected)
    if reprocess_all and outside:
        raise ConfigError(
            "a run that re-processes everything (new config or model, or forced) must include all sources"
        )
    deleted = sorted(d for d, (_, src) in live_docs.items() if src in selected and d not in listed_ids)
    _check_breaker(config, live_docs, deleted, parent, force_delete_reason)

    run_dir = store.run_dir(run_id)
    batch_paths = _write_batches(todo, run_dir / "batches", config.processing.batch_size, config.processing.max_batches)
    plan = Plan(
        index=config.name,
        run_id=run_id,
        build_time=(build_time or datetime.now(UTC)).astimezone(UTC).isoformat(),
        trigger=trigger,
        fingerprint=config.fingerprint(),
        model_id=model_id,
        model_dimension=embedder.dimension,
        model_max_tokens=embedder.tokenizer.max_tokens,
        parent=parent,
        reprocess_all=reprocess_all,
        counts={
            "new": new,
            "changed": changed,
            "unchanged": unchanged,
            "deleted": len(deleted),
            "skipped": len(skipped),
        },
        batches=[str(p) for p in batch_paths],
        processed=sorted(todo_ids),
        carry_over=[*carry, *outside],
        deleted=deleted,
        skipped=skipped,
        source_digests=digests,
        timings_s={"discover": round(time.perf_counter() - started, 3)},
        forced_delete=force_delete_reason,
    )
    path = run_dir / "plan.json"
    write_json_atomic(path, plan.model_dump(mode="json"))
    return path


def _check_breaker(
    config: IndexConfig,
    live_docs: dict[str, tuple[str, str]],
    deleted: list[str],
    parent: str | None,
    reason: str | None,
) -> None:
    """Refuse a run that would delete more than ``max_delete_share`` of the index, unless forced."""
    if not live_docs or not deleted:
        return
    share = len(deleted) / len(live_docs)
    limit = config.processing.max_delete_share
    if share <= limit or reason:
        return
    by_source: dict[str, int] = {}
    for doc_id in deleted:
        by_source[live_docs[doc_id][1]] = by_source.get(live_docs[doc_id][1], 0) + 1
    detail = ", ".join(f"{src}: {n}" for src, n in sorted(by_source.items()))
    examples = ", ".join(deleted[:5])
    raise DeleteBreakerTripped(
        f"index {config.name!r}: this run would delete {len(deleted)} of {len(live_docs)} documents "
        f"({share:.0%}) of the live version {parent}, over the limit of {limit:.0%} ({detail}; e.g. {examples}). "
        "Nothing was published. If this is intended, re-run forced with a reason."
    )


def _write_batches(docs: list[SourceDocument], folder: Path, batch_size: int, max_batches: int) -> list[Path]:
    """Write ``docs`` in at most ``max_batches`` JSON Lines files, replacing earlier ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jsonl"):
        old.unlink()
    if not docs:
        return []
    size = max(batch_size, math.ceil(len(docs) / max_batches))
    paths = []
    for number, start in enumerate(range(0, len(docs), size)):
        path = folder / f"{number:05d}.jsonl"
        write_documents(path, docs[start : start + size])
        paths.append(path)
    return paths
