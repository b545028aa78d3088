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

A run may have a time window (under Airflow: the data interval of a scheduled
or backfill run). Time-partitioned sources then list only that window's
documents; the others are read whole. Documents of a partitioned source that
the window did not list are carried over unchanged, never read as deleted: a
document is deleted only where its absence is certain (a file no longer in its
folder; a row only by a run without a window). So incremental runs and
backfills converge to a full rebuild. A run whose config or model differs from
the live version's re-processes everything and so ignores its window.

The plan also freezes the run's effective config (the index file, a pin, and
the run's overrides such as a chunking override from the trigger form): every
later stage of the run uses :func:`run_config`, so a file edited mid-run cannot
mix two configs in one version. A dry run plans and lists what would be new,
changed and deleted, writes no batch and is never assembled.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, Field, ValidationError

from groundwork.config import ChunkingConfig, IndexConfig
from groundwork.documents import SourceDocument, write_documents
from groundwork.embedding import Embedder
from groundwork.errors import ConfigError, DeleteBreakerTripped, SourceError
from groundwork.sources import ConnectionResolver, discover
from groundwork.sources.window import TimeWindow
from groundwork.versions import VersionStore, write_json_atomic

__all__ = ["Plan", "plan_path_of_batch", "plan_run", "read_plan", "run_config", "select_sources", "with_overrides"]

log = logging.getLogger(__name__)


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
    new: list[str] = Field(default_factory=list, description="doc ids of new documents (a subset of processed)")
    window: dict[str, str] | None = Field(default=None, description="the time window read: {start, end} (UTC)")
    windowed_sources: list[str] = Field(default_factory=list, description="sources read only in the window")
    dry_run: bool = Field(default=False, description="list the changes only: no batches, never assembled")
    overrides: dict[str, Any] = Field(default_factory=dict, description="this run's overrides of the index file")
    effective_config: dict[str, Any] | None = Field(default=None, description="the config every stage runs with")
    warnings: list[str] = Field(default_factory=list)

    def changes(self) -> dict[str, list[str]]:
        """Doc ids by change: new, changed, deleted."""
        new = set(self.new)
        return {
            "new": sorted(new),
            "changed": sorted(d for d in self.processed if d not in new),
            "deleted": list(self.deleted),
        }


def read_plan(path: Path) -> Plan:
    return Plan.model_validate_json(path.read_text())


def plan_path_of_batch(batch: Path) -> Path:
    """The plan a batch file belongs to (``<run>/batches/N.jsonl`` -> ``<run>/plan.json``)."""
    return batch.parent.parent / "plan.json"


def run_config(plan: Plan, source_file: Path | None = None) -> IndexConfig | None:
    """The config a run's later stages use: the one its plan froze (None for plans that froze none)."""
    if plan.effective_config is None:
        return None
    return IndexConfig.model_validate({**plan.effective_config, "source_file": source_file})


def select_sources(config: IndexConfig, sources: Sequence[str] | None) -> list[str]:
    """The sources a run reads (all when none are named); ConfigError naming any the index does not have."""
    selected = list(dict.fromkeys(sources)) if sources else config.source_names
    unknown = sorted(set(selected) - set(config.source_names))
    if unknown:
        raise ConfigError(
            f"index {config.name!r} has no source(s) {', '.join(map(repr, unknown))}; "
            f"it has: {', '.join(config.source_names)}"
        )
    return selected


def with_overrides(config: IndexConfig, *, chunking: Mapping[str, Any] | None = None) -> IndexConfig:
    """``config`` with a run's chunking override (any ``ChunkingConfig`` fields) applied and validated.

    Fields not named keep the index's values. An invalid override raises ConfigError naming the field.
    """
    if not chunking:
        return config
    merged = {**config.chunking.model_dump(), **dict(chunking)}
    try:
        checked = ChunkingConfig.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'chunking'}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden" and e.get("loc") else "")
            for e in exc.errors()
        )
        raise ConfigError(f"index {config.name!r}: invalid chunking override {dict(chunking)}: {problems}") from None
    return config.model_copy(update={"chunking": checked})


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
    window: TimeWindow | None = None,
    dry_run: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Discover, diff and batch; returns the path of the written plan.

    ``force`` re-processes every document the run reads. ``force_delete_reason``
    lets a run delete more than ``processing.max_delete_share`` of the documents
    (or empty a source) and is recorded in the plan and the manifest.
    ``window`` limits time-partitioned sources to a data interval. ``dry_run``
    writes the plan without batches; the breaker and the empty-source guard
    become warnings in it. ``overrides`` records what ``config`` changed from
    the index file for this run (see :func:`with_overrides`).
    """
    model_id = embedder.model_id
    started = time.perf_counter()
    selected = select_sources(config, sources)

    live = store.live()
    parent = live.version if live else None
    live_docs: dict[str, tuple[str, str]] = {}
    rebuild = False
    if parent is not None:
        manifest = store.manifest(parent)
        # Another chunking/enrichment/model config means every document is re-chunked
        # (the embedding cache still spares texts it has seen).
        rebuild = manifest.config_fingerprint != config.fingerprint() or manifest.model_id != model_id
        live_docs = _live_documents(store, parent)
    reprocess_all = force or parent is None or rebuild
    # Sources outside this run's subset keep every document they had: only under the same config.
    outside = sorted(d for d, (_, src) in live_docs.items() if src not in selected)
    if rebuild and outside:
        raise ConfigError(
            f"index {config.name!r}: this run's config or model differs from the live version {parent}'s, so "
            f"every document must be re-processed: run it with all sources (not only {', '.join(selected)})"
        )
    warnings: list[str] = []
    if window is not None and rebuild:
        warnings.append(f"config or model changed since {parent}: the window {window} is ignored, sources read whole")
        window = None

    listed: list[SourceDocument] = []
    skipped: list[dict[str, Any]] = []
    digests: dict[str, str] = {}
    deleted_set: set[str] = set()
    windowed: list[str] = []
    for name in selected:
        found = discover(config.source(name), window=window, resolve_connection=resolve_connection)
        live_here = {d for d, (_, src) in live_docs.items() if src == name}
        ids_here = {d.doc_id for d in found.documents}
        if found.windowed:
            windowed.append(name)
            # Not listed is not deleted: only a document known to be gone from the source is.
            gone = live_here - ids_here - found.existing if found.existing is not None else set()
            emptied = found.existing is not None and not found.existing
        else:
            gone = live_here - ids_here
            emptied = not found.documents
        if emptied and live_here and not force_delete_reason:
            message = (
                f"source {name!r} listed no documents but the live version {parent} has {len(live_here)} from it; "
                "refusing to delete them all (fix the source, or force the run with a reason)"
            )
            if not dry_run:
                raise SourceError(message)
            warnings.append(message)
        deleted_set |= gone
        listed.extend(found.documents)
        skipped.extend(s.to_dict() for s in found.skipped)
        digests[name] = _digest(found.documents)

    todo: list[SourceDocument] = []
    new_ids: list[str] = []
    changed = unchanged = 0
    for doc in listed:
        before = live_docs.get(doc.doc_id)
        if before is None:
            new_ids.append(doc.doc_id)
            todo.append(doc)
        elif reprocess_all or before[0] != doc.content_hash:
            changed += 1
            todo.append(doc)
        else:
            unchanged += 1
    todo_ids = {t.doc_id for t in todo}
    deleted = sorted(deleted_set)
    carry = sorted(d for d in live_docs if d not in todo_ids and d not in deleted_set)
    listed_ids = {d.doc_id for d in listed}
    outside_window = sum(1 for d in carry if live_docs[d][1] in windowed and d not in listed_ids)
    try:
        _check_breaker(config, live_docs, deleted, parent, force_delete_reason)
    except DeleteBreakerTripped as exc:
        if not dry_run:
            raise
        warnings.append(str(exc))
    for warning in warnings:
        log.warning("%s", warning)

    run_dir = store.run_dir(run_id)
    batch_paths = _write_batches(
        [] if dry_run else todo, run_dir / "batches", config.processing.batch_size, config.processing.max_batches
    )
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
            "new": len(new_ids),
            "changed": changed,
            "unchanged": unchanged,
            "deleted": len(deleted),
            "skipped": len(skipped),
            "outside_window": outside_window,
        },
        batches=[str(p) for p in batch_paths],
        processed=sorted(todo_ids),
        carry_over=carry,
        deleted=deleted,
        skipped=skipped,
        source_digests=digests,
        timings_s={"discover": round(time.perf_counter() - started, 3)},
        forced_delete=force_delete_reason,
        new=sorted(new_ids),
        window=window.to_dict() if window is not None else None,
        windowed_sources=windowed,
        dry_run=dry_run,
        overrides=dict(overrides or {}),
        effective_config=config.model_dump(mode="json"),
        warnings=warnings,
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
