"""The refresh of one index, stage by stage, without Airflow.

The DAG runs the same stages as separate tasks (plan, one process task per
batch, assemble, publish) and passes paths between them; :func:`run_index`
runs them in one process for the CLI, tests and DVC stages. :func:`summarize`
renders a manifest as the run summary shown in task logs and the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from groundwork.assembly import assemble
from groundwork.config import IndexConfig
from groundwork.embedding import Embedder, load_embedder
from groundwork.embedding_cache import EmbeddingCache
from groundwork.lifecycle import effective_config, prune, snapshot_version
from groundwork.planning import plan_run, read_plan
from groundwork.processing import process_batch
from groundwork.publishing import PublishResult, publish_version
from groundwork.settings import Settings
from groundwork.sources import ConnectionResolver
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
    resolve_connection: ConnectionResolver | None = None,
    connection: ServerConnection | None = None,
) -> RunResult:
    """Plan, process every batch, assemble, validate, snapshot, publish and prune one refresh.

    ``force`` re-processes every document; ``force_reason`` publishes past a failed
    quality gate and is recorded in the manifest.
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
        model_id=embedder.model_id,
        build_time=now,
        trigger=trigger,
        sources=sources,
        force=force,
        resolve_connection=resolve_connection,
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
        snapshot_version(config, settings, result.version)
    target = target or resolve_target(config.qdrant, settings, connection)
    published = publish_version(config, store, result.version, target)
    prune(config, settings, target)
    return RunResult(result.version, result.created, store.manifest(result.version), published)


def summarize(manifest: Manifest, created: bool = True) -> str:
    """A few lines a person reads in a task log: what changed, what was skipped, how long."""
    docs, chunks = manifest.counts["documents"], manifest.counts["chunks"]
    lines = [
        f"index {manifest.index}: version {manifest.version}" + ("" if created else " (unchanged, still live)"),
        "  documents: " + ", ".join(f"{k} {v}" for k, v in docs.items()),
        "  chunks: " + ", ".join(f"{k} {v}" for k, v in chunks.items()),
        "  time (s): " + ", ".join(f"{k} {v}" for k, v in manifest.timings_s.items()),
    ]
    for item in manifest.skipped[:20]:
        lines.append(f"  skipped {item['uri']}: {item['error_type']}: {item['message']}")
    if len(manifest.skipped) > 20:
        lines.append(f"  ... and {len(manifest.skipped) - 20} more skipped (see {manifest.version}/manifest.json)")
    return "\n".join(lines)
