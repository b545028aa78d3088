"""What happens to versions after they are built: snapshot, retention, rollback, pins, audit.

* :func:`snapshot_version` records a validated candidate in the DVC registry
  before its alias moves, and notes the tag and revision in its manifest.
* :func:`prune` keeps the live collection plus the newest ``retention.keep``
  other versions in Qdrant; older collections are dropped (they stay
  restorable from DVC).
* :func:`rollback` moves the alias back to an earlier version: at once if its
  collection still exists, else after restoring the version from its snapshot
  and uploading its stored vectors into a fresh collection (nothing is
  embedded). It pins the index to that version's effective config and writes
  the audit log.
* :func:`effective_config` is what every refresh runs with: the index file, or
  the pinned version's config while a pin stands. A pin ends when an operator
  clears it or when the index file changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from groundwork.config import IndexConfig
from groundwork.errors import ConfigError, NotFoundError
from groundwork.publishing import index_lock
from groundwork.settings import Settings
from groundwork.snapshots import registry_for
from groundwork.vectorstore import QdrantTarget, alias_target, drop_collection, move_alias, open_client, upload_table
from groundwork.versions import VersionStore, collection_name, write_json_atomic

__all__ = ["RollbackResult", "clear_pin", "effective_config", "prune", "read_pin", "rollback", "snapshot_version"]

log = logging.getLogger(__name__)


def snapshot_version(config: IndexConfig, settings: Settings, version: str) -> dict[str, Any] | None:
    """Snapshot ``version`` into the DVC registry (no-op when snapshots are disabled)."""
    if not config.snapshots.enabled:
        return None
    started = time.perf_counter()
    store = VersionStore(settings, config.name)
    registry = registry_for(settings)
    snap = registry.snapshot(config.name, version, store.version_dir(version))
    record = {"tag": snap.tag, "revision": snap.revision, "registry": str(registry.root), "remote": registry.remote}
    store.update_manifest(version, snapshot=record, timings_s={"snapshot": round(time.perf_counter() - started, 3)})
    return record


def prune(config: IndexConfig, settings: Settings, target: QdrantTarget) -> list[str]:
    """Drop collections of versions older than the newest ``retention.keep`` (never the live one)."""
    prefix = f"{config.name}__"
    with open_client(target) as client:
        live = alias_target(client, config.name)
        ours = sorted(c.name for c in client.get_collections().collections if c.name.startswith(prefix))
        others = [c for c in ours if c != live]
        doomed = others[: max(0, len(others) - config.retention.keep)]
        for name in doomed:
            drop_collection(client, name)
    if doomed:
        log.info("pruned %s (restorable from DVC)", ", ".join(doomed))
    return doomed


# -- pins -----------------------------------------------------------------------------------------


def _config_digest(config: IndexConfig, *, legacy: bool = False) -> str:
    """What the index file says, defaults left out: a pin outlives a release that adds a defaulted option.

    ``legacy`` gives the digest pins written before 2026-11-26 carry (defaults included).
    """
    blob = json.dumps(config.model_dump(mode="json", exclude_unset=not legacy), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_pin(settings: Settings, index: str) -> dict[str, Any] | None:
    path = VersionStore(settings, index).root / "pin.json"
    return json.loads(path.read_text()) if path.is_file() else None


def clear_pin(settings: Settings, index: str, why: str = "cleared by an operator") -> bool:
    path = VersionStore(settings, index).root / "pin.json"
    if not path.is_file():
        return False
    path.unlink()
    _audit(settings, index, {"action": "unpin", "reason": why})
    return True


def effective_config(config: IndexConfig, settings: Settings) -> IndexConfig:
    """The config a refresh runs with: the pinned version's while a pin stands, else the file's."""
    pin = read_pin(settings, config.name)
    if pin is None:
        return config
    if pin["file_digest"] not in (_config_digest(config), _config_digest(config, legacy=True)):
        clear_pin(settings, config.name, why="the index file changed after the rollback")
        return config
    manifest = VersionStore(settings, config.name).manifest(pin["version"])
    pinned = IndexConfig.model_validate({**manifest.effective_config, "source_file": config.source_file})
    log.info("index %s is pinned to version %s's config (%s)", config.name, pin["version"], pin.get("reason"))
    return pinned


# -- rollback -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackResult:
    index: str
    from_version: str | None
    to_version: str
    collection: str
    restored_from_snapshot: bool
    points: int
    seconds: float


def _audit(settings: Settings, index: str, entry: dict[str, Any]) -> None:
    path = VersionStore(settings, index).root / "audit.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"at": datetime.now(UTC).isoformat(), "index": index, **entry}) + "\n")


def read_audit(settings: Settings, index: str) -> list[dict[str, Any]]:
    path = VersionStore(settings, index).root / "audit.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rollback(
    config: IndexConfig,
    settings: Settings,
    version: str,
    *,
    reason: str,
    target: QdrantTarget,
    run_id: str = "cli",
) -> RollbackResult:
    """Make ``version`` live again without embedding anything; pin its config; audit it."""
    started = time.perf_counter()
    if not reason.strip():
        raise ConfigError("a rollback needs a reason (it is written to the audit log)")
    store = VersionStore(settings, config.name)
    registry = registry_for(settings)
    local = version in store.versions()
    if not local and version not in (registry.tags(config.name) if registry.root.exists() else []):
        known = sorted(set(store.versions()))
        raise NotFoundError(f"index {config.name!r} has no version {version!r}; known: {', '.join(known) or 'none'}")
    if local:
        gate = store.manifest(version).validation or {}
        if gate and not (gate.get("success") or gate.get("forced")):
            raise ConfigError(f"version {version} was rejected by the quality gate and was never live")
    with index_lock(store):
        collection = collection_name(config.name, version)
        restored = False
        with open_client(target) as client:
            previous = alias_target(client, config.name)
            if not client.collection_exists(collection):
                if not store.chunks_path(version).is_file():
                    registry.restore(config.name, version, store.version_dir(version))
                manifest = store.manifest(version)
                try:
                    upload_table(
                        client,
                        collection,
                        store.chunks_path(version),
                        manifest.dimension,
                        manifest.effective_config.get("qdrant", {}).get("distance", "cosine"),
                        config.qdrant.upload_batch_size,
                        layout=target.layout,
                        hybrid=manifest.effective_config.get("search_mode") == "hybrid",
                    )
                except Exception:
                    drop_collection(client, collection)
                    raise
                restored = True
            points = client.count(collection, exact=True).count
            move_alias(client, config.name, collection)
        store.set_live(version, collection)
        pin = {"version": version, "reason": reason, "file_digest": _config_digest(config)}
        write_json_atomic(store.root / "pin.json", {**pin, "at": datetime.now(UTC).isoformat()})
    result = RollbackResult(
        config.name, previous.split("__", 1)[1] if previous else None, version, collection, restored, points,
        round(time.perf_counter() - started, 3),
    )  # fmt: skip
    _audit(settings, config.name, {"action": "rollback", "run_id": run_id, "reason": reason, **asdict(result)})
    log.info("rolled %s back to %s (%s)", config.name, version, "restored from DVC" if restored else "collection kept")
    return result
