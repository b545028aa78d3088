"""Publishing: atomic alias moves, verified counts, no orphans after a failure, idempotent retries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from groundwork.embedding_cache import EmbeddingCache
from groundwork.errors import PublishError
from groundwork.pipeline import run_index
from groundwork.publishing import publish_version
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, alias_target, open_client, resolve_target
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, make_index


def _fail_second_upsert(monkeypatch: pytest.MonkeyPatch, error: Exception) -> Any:
    """Make the second ``upsert`` of the test raise ``error``; returns the real method to restore."""
    real_upsert = QdrantClient.upsert
    calls = {"n": 0}

    def failing_upsert(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise error
        return real_upsert(self, *args, **kwargs)

    monkeypatch.setattr(QdrantClient, "upsert", failing_upsert)
    return real_upsert


def test_retry_of_publish_is_a_no_op(tmp_path: Path, settings: Settings, memory_target: QdrantTarget) -> None:
    cfg = make_index(tmp_path)
    result = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    again = publish_version(cfg, VersionStore(settings, cfg.name), result.version, memory_target)
    assert not again.changed and again.points == result.published.points
    with open_client(memory_target) as client:
        assert [c.name for c in client.get_collections().collections] == [f"demo__{result.version}"]


def test_failed_upload_drops_the_candidate_and_keeps_the_live_version(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_index(tmp_path)
    first = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    (tmp_path / "docs" / "delta.md").write_text("# Delta\n\nDelta drones fly in formation.\n")

    real_upsert = _fail_second_upsert(monkeypatch, ConnectionError("connection reset by peer"))
    cfg_small_batches = make_index(tmp_path, qdrant={"location": ":memory:", "upload_batch_size": 2})
    with pytest.raises(PublishError, match="connection reset"):
        run_index(cfg_small_batches, settings, embedder=FakeEmbedder(), cache=EmbeddingCache(settings.cache_path),
                  target=memory_target)  # fmt: skip
    with open_client(memory_target) as client:
        assert alias_target(client, "demo") == f"demo__{first.version}"
        assert [c.name for c in client.get_collections().collections] == [f"demo__{first.version}"]
    assert VersionStore(settings, "demo").live().version == first.version  # type: ignore[union-attr]

    monkeypatch.setattr(QdrantClient, "upsert", real_upsert)
    retried = run_index(cfg_small_batches, settings, embedder=FakeEmbedder(), target=memory_target)
    assert retried.manifest.counts["documents"]["new"] == 1
    with open_client(memory_target) as client:
        assert alias_target(client, "demo") == f"demo__{retried.version}"


def test_local_folder_target_persists_and_locks(tmp_path: Path, settings: Settings) -> None:
    cfg = make_index(tmp_path, qdrant={})
    target = resolve_target(cfg.qdrant, settings)
    assert target.kind == "local" and target.path == settings.qdrant_path
    result = run_index(cfg, settings, embedder=FakeEmbedder(), target=target)
    with open_client(target) as client:
        assert client.count("demo", exact=True).count == result.published.points
        with pytest.raises(PublishError, match="stayed busy"), open_client(target, lock_timeout_s=0.2):
            pass


def test_local_upload_is_durable_and_leaves_the_default_journal(tmp_path: Path, settings: Settings) -> None:
    """The upload runs its SQLite in WAL mode without per-point fsyncs, and checkpoints before the alias moves."""
    import sqlite3

    cfg = make_index(tmp_path, qdrant={"upload_batch_size": 2})
    target = resolve_target(cfg.qdrant, settings)
    result = run_index(cfg, settings, embedder=FakeEmbedder(), target=target)
    assert target.path is not None
    storage = target.path / "collection" / result.published.collection / "storage.sqlite"
    assert not storage.with_name("storage.sqlite-wal").exists()  # checkpointed and back to the rollback journal
    with sqlite3.connect(storage) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        rows = conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    assert rows == result.published.points > 2
    with open_client(target) as client:  # a fresh client loads every point from the file
        assert client.count("demo", exact=True).count == result.published.points


def test_failed_local_upload_leaves_a_store_that_opens(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_index(tmp_path, qdrant={"upload_batch_size": 2})
    target = resolve_target(cfg.qdrant, settings)
    first = run_index(cfg, settings, embedder=FakeEmbedder(), target=target)
    (tmp_path / "docs" / "delta.md").write_text("# Delta\n\nDelta drones fly in formation.\n")

    real_upsert = _fail_second_upsert(monkeypatch, OSError("disk full"))
    with pytest.raises(PublishError, match="disk full"):
        run_index(cfg, settings, embedder=FakeEmbedder(), target=target)
    monkeypatch.setattr(QdrantClient, "upsert", real_upsert)
    with open_client(target) as client:
        assert alias_target(client, "demo") == f"demo__{first.version}"
        assert [c.name for c in client.get_collections().collections] == [f"demo__{first.version}"]
        assert client.count("demo", exact=True).count == first.published.points


def test_server_target_takes_url_and_api_key_from_env(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_QDRANT_KEY", "s3cret")
    cfg = make_index(tmp_path, qdrant={"url": "http://qdrant.internal:6333", "api_key_env": "MY_QDRANT_KEY"})
    target = resolve_target(cfg.qdrant, settings)
    assert (target.kind, target.url, target.api_key) == ("server", "http://qdrant.internal:6333", "s3cret")
