"""The refresh of one index, stage by stage, without Airflow.

The DAG runs the same stages as separate tasks (plan, one process task per
batch, assemble, publish) and passes paths between them; :func:`run_index`
runs them in one process for the CLI, tests and DVC stages. :func:`summarize`
renders a manifest as the run summary shown in task logs and the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from groundwork.assembly import assemble
from groundwork.config import IndexConfig
from groundwork.embedding import Embedder, load_embedder
from groundwork.embedding_cache import EmbeddingCache
from groundwork.evaluation import evaluate_version
from groundwork.lifecycle import effective_config, snapshot_version
from groundwork.planning import plan_run, read_plan
from groundwork.processing import process_batch
from groundwork.publishing import PublishResult, commit_version
from groundwork.settings import Settings
from groundwork.sources import ConnectionResolver, TimeWindow
from groundwork.validation import validate_version
from groundwork.vectorstore import QdrantTarget, ServerConnection, resolve_target
from groundwork.versions import Manifest, VersionStore

__all__ = ["RunResult", "run_index", "summarize"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    version: str
    created: bool
    manifest: Manifest
    published: PublishResult
    skipped: list[dict[str, Any]] = field(default_factory=list)  # this run's quarantine, version or not


def run_index(
    config: IndexConfig,
    settings: Settings,
    *,
    run_id: str | None = None,
    embedder: Embedder | None = None,
    cache: EmbeddingCache | None = None,
    target: QdrantTarget | None = None,
    trigger: str = "manual",
    sources: Sequence[str] | None = None,
    force: bool = False,
    force_reason: str | None = None,
    force_delete_reason: str | None = None,
    resolve_connection: ConnectionResolver | None = None,
    connection: ServerConnection | None = None,
    window: TimeWindow | None = None,
) -> RunResult:
    """Plan, process every batch, assemble, validate, evaluate, snapshot, publish and prune one refresh.

    ``force`` re-processes every document; ``force_reason`` publishes past a failed
    quality gate and ``force_delete_reason`` past the delete circuit breaker; both
    are recorded in the manifest. ``window`` limits time-partitioned sources to a data interval
    (as a scheduled or backfill run under Airflow does).
    """
    now = datetime.now(UTC)
    run_id = run_id or f"cli__{now:%Y%m%dT%H%M%S%fZ}"
    config = effective_config(config, settings)
    embedder = embedder or load_embedder(config.embedding)
    cache = cache if cache is not None else EmbeddingCache(settings.cache_path)
    store = VersionStore(settings, config.name)
    plan_path = plan_run(
        config,
        store,
        run_id=run_id,
        embedder=embedder,
        build_time=now,
        trigger=trigger,
        sources=sources,
        force=force,
        force_delete_reason=force_delete_reason,
        resolve_connection=resolve_connection,
        window=window,
    )
    for batch in read_plan(plan_path).batches:
        process_batch(config, Path(batch), embedder, cache)
    result = assemble(config, store, plan_path)
    if result.created:
        validate_version(
            config,
            store,
            result.version,
            dimension=embedder.dimension,
            max_tokens=embedder.tokenizer.max_tokens,
            force_reason=force_reason,
        )
        evaluate_version(config, store, result.version, embedder, force_reason=force_reason)
        snapshot_version(config, settings, result.version)
    live = store.live()
    if not result.created and live is not None and live.version == result.version:
        # Nothing changed and the live pointer agrees: no need to even open the vector store.
        manifest = store.manifest(result.version)
        noop = PublishResult(result.version, live.collection, manifest.counts["chunks"]["total"], result.version, False)
        return RunResult(result.version, False, manifest, noop, result.skipped)
    target = target or resolve_target(config.qdrant, settings, connection)
    published = commit_version(config, settings, plan_path, result.version, target, force_reason=force_reason)
    return RunResult(published.version, result.created, store.manifest(published.version), published, result.skipped)


_DOC_KEYS = ("new", "changed", "unchanged", "deleted", "quarantined", "total")
_CHUNK_KEYS = ("total", "processed", "carried", "embedded", "reused")


def summarize(manifest: Manifest, created: bool = True, skipped: list[dict[str, Any]] | None = None) -> str:
    """A few lines a person reads in a task log: what changed, what was skipped, how long.

    ``skipped`` is the run's own quarantine; it is listed even when no version was created (a run
    whose only new files cannot be parsed leaves the index as it was, but must say so).
    """
    if not created:
        lines = [f"index {manifest.index}: nothing changed; version {manifest.version} stays live"]
        if skipped:
            lines[0] = f"index {manifest.index}: no new content; version {manifest.version} stays live"
            lines.append(f"  quarantined by this run: {len(skipped)} (not in any version; retried next run)")
            lines += _quarantine_lines(skipped)
        return "\n".join(lines)
    docs, chunks = manifest.counts["documents"], manifest.counts["chunks"]
    lines = [
        f"index {manifest.index}: version {manifest.version} (parent {manifest.parent})",
        "  documents: " + ", ".join(f"{k} {docs[k]}" for k in _DOC_KEYS if k in docs),
        "  chunks: " + ", ".join(f"{k} {chunks[k]}" for k in _CHUNK_KEYS if k in chunks),
        "  time (s): " + ", ".join(f"{k} {v}" for k, v in manifest.timings_s.items()),
    ]
    if manifest.rebased_from:
        lines.append(f"  rebased: planned against {manifest.rebased_from}, applied on {manifest.parent}")
    if manifest.window:
        lines.append(f"  window: [{manifest.window['start']}, {manifest.window['end']})")
    if manifest.overrides:
        lines.append(f"  overrides: {manifest.overrides}")
    if manifest.forced_delete:
        lines.append(f"  delete breaker overridden: {manifest.forced_delete}")
    gate = manifest.validation
    if gate:
        verdict = "passed" if gate["success"] else f"failed {gate['failed']}"
        lines.append(f"  quality gate: {verdict}" + (f" - forced: {gate['reason']}" if gate.get("forced") else ""))
    lines += _quarantine_lines(manifest.skipped, f"{manifest.version}/quarantine.parquet")
    return "\n".join(lines)


def _quarantine_lines(skipped: list[dict[str, Any]], where: str | None = None) -> list[str]:
    lines = [f"  quarantined {item['uri']}: {item['error_type']}: {item['message']}" for item in skipped[:20]]
    if len(skipped) > 20:
        lines.append(f"  ... and {len(skipped) - 20} more" + (f" (see {where})" if where else ""))
    return lines
