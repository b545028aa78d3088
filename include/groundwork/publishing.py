"""Publish a version: upload its collection, verify it, move the alias, record it live.

Readers only ever see a complete version: the alias moves after the upload is
counted. If anything fails before the alias moves, the half-written collection
is dropped (no orphans) and the live version stays as it was. Publishing a
version that is already live is a no-op, so a retried task is harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from groundwork.config import IndexConfig
from groundwork.errors import GroundworkError, PublishError
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, alias_target, drop_collection, move_alias, open_client, upload_table
from groundwork.versions import VersionStore, collection_name

__all__ = ["PublishResult", "commit_version", "index_lock", "publish_version"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishResult:
    version: str
    collection: str
    points: int
    previous: str | None
    changed: bool


def publish_version(config: IndexConfig, store: VersionStore, version: str, target: QdrantTarget) -> PublishResult:
    """Make ``version`` the live version of its index on ``target``."""
    started = time.perf_counter()
    manifest = store.manifest(version)
    collection = collection_name(config.name, version)
    with open_client(target) as client:
        current = alias_target(client, config.name)
        if current == collection:
            points = client.count(collection, exact=True).count
            store.set_live(version, collection)
            return PublishResult(version, collection, points, current, False)
        try:
            points = upload_table(
                client,
                collection,
                store.chunks_path(version),
                manifest.dimension,
                config.qdrant.distance,
                config.qdrant.upload_batch_size,
                layout=target.layout,
                hybrid=manifest.effective_config.get("search_mode") == "hybrid",
            )
            move_alias(client, config.name, collection)
        except Exception as exc:
            if alias_target(client, config.name) != collection:
                drop_collection(client, collection)
            if isinstance(exc, GroundworkError):
                raise
            raise PublishError(f"publishing {collection} to {target.describe()} failed: {exc}") from exc
        store.set_live(version, collection)
    store.update_manifest(version, timings_s={"publish": round(time.perf_counter() - started, 3)})
    log.info("published %s (%d points); alias %s moved from %s", collection, points, config.name, current)
    return PublishResult(version, collection, points, current, True)


@contextmanager
def index_lock(store: VersionStore, timeout_s: float = 1800) -> Iterator[None]:
    """One commit (rebase, publish, prune) or rollback of an index at a time, across processes."""
    from filelock import FileLock, Timeout

    store.root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(store.root / "commit.lock"))
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise PublishError(f"index {store.index!r} stayed locked by another run for {timeout_s:.0f}s") from None
    try:
        yield
    finally:
        lock.release()


def commit_version(
    config: IndexConfig,
    settings: Settings,
    plan_path: Path,
    version: str,
    target: QdrantTarget,
    *,
    force_reason: str | None = None,
) -> PublishResult:
    """Publish a run's version, rebasing it first if another run went live meanwhile; then prune.

    Runs of one index may overlap (backfills run several at once). Under the
    index lock, if the live version is no longer the one this run planned
    against, the run's changes are re-applied on top of the live version (see
    :func:`groundwork.assembly.assemble`), validated and snapshotted again, so
    the final live version contains every run's changes.
    """
    from groundwork.assembly import assemble
    from groundwork.lifecycle import prune, snapshot_version
    from groundwork.planning import read_plan
    from groundwork.validation import validate_version

    store = VersionStore(settings, config.name)
    with index_lock(store):
        live = store.live()
        manifest = store.manifest(version)
        if live is not None and live.version not in (manifest.parent, version):
            log.info("live moved to %s since this run planned against %s: rebasing", live.version, manifest.parent)
            rebased = assemble(config, store, plan_path, base=live.version)
            version = rebased.version
            if rebased.created:
                plan = read_plan(plan_path)
                validate_version(
                    config,
                    store,
                    version,
                    dimension=plan.model_dimension,
                    max_tokens=plan.model_max_tokens,
                    force_reason=force_reason,
                )
                snapshot_version(config, settings, version)
        result = publish_version(config, store, version, target)
        prune(config, settings, target)
    return result
