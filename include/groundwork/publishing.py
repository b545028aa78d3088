"""Publish a version: upload its collection, verify it, move the alias, record it live.

Readers only ever see a complete version: the alias moves after the upload is
counted. If anything fails before the alias moves, the half-written collection
is dropped (no orphans) and the live version stays as it was. Publishing a
version that is already live is a no-op, so a retried task is harmless.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from groundwork.config import IndexConfig
from groundwork.errors import GroundworkError, PublishError
from groundwork.vectorstore import QdrantTarget, alias_target, drop_collection, move_alias, open_client, upload_table
from groundwork.versions import VersionStore, collection_name

__all__ = ["PublishResult", "publish_version"]

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
