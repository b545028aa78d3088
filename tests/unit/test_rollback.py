"""Versions, DVC snapshots and rollback: the round trip of issue 'Versions, DVC snapshots and rollback'."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import groundwork.embedding_cache as embedding_cache
from groundwork.config import IndexConfig
from groundwork.diffing import diff_versions
from groundwork.errors import ConfigError, NotFoundError
from groundwork.lifecycle import clear_pin, read_audit, read_pin, rollback
from groundwork.pipeline import run_index
from groundwork.settings import Settings
from groundwork.snapshots import registry_for
from groundwork.vectorstore import QdrantTarget, alias_target, open_client
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, make_index

BY_TITLE = {"strategy": "by_title", "max_characters": 400, "new_after_n_chars": 300}
TOKENS = {"strategy": "tokens", "max_tokens": 8, "overlap_tokens": 2}


def _index(tmp_path: Path, chunking: dict[str, Any], keep: int = 3) -> IndexConfig:
    return make_index(tmp_path, chunking=chunking, snapshots={"enabled": True}, retention={"keep": keep})


def _points(target: QdrantTarget, collection: str) -> dict[str, tuple[dict[str, Any], list[float]]]:
    with open_client(target) as client:
        records, _ = client.scroll(collection, limit=10_000, with_payload=True, with_vectors=True)
    return {str(r.id): (dict(r.payload or {}), list(r.vector)) for r in records}  # type: ignore[arg-type]


def _no_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a rollback must not embed anything")

    monkeypatch.setattr(embedding_cache, "embed_with_cache", refuse)
    monkeypatch.setattr(FakeEmbedder, "encode", refuse)


def test_round_trip_with_collection_present_then_pruned(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = run_index(_index(tmp_path, BY_TITLE, keep=1), settings, embedder=FakeEmbedder(), target=memory_target)
    v1_points = _points(memory_target, v1.published.collection)
    v2 = run_index(_index(tmp_path, TOKENS, keep=1), settings, embedder=FakeEmbedder(), target=memory_target)
    assert v2.version != v1.version
    registry = registry_for(settings)
    assert registry.tags("demo") == sorted([v1.version, v2.version])
    assert VersionStore(settings, "demo").manifest(v1.version).snapshot["tag"] == f"demo/{v1.version}"  # type: ignore[index]

    # 1. Collection still there (keep=1 keeps v1 beside live v2): the alias just moves.
    cfg_now = _index(tmp_path, TOKENS, keep=1)
    back = rollback(cfg_now, settings, v1.version, reason="tokens chunks too small", target=memory_target)
    assert not back.restored_from_snapshot and back.from_version == v2.version
    with open_client(memory_target) as client:
        assert alias_target(client, "demo") == v1.published.collection

    # The next refresh keeps v1's chunking although the file says tokens: nothing to do.
    embedder = FakeEmbedder()
    again = run_index(cfg_now, settings, embedder=embedder, target=memory_target)
    assert again.version == v1.version and embedder.encoded == []

    # 2. Prune v1's collection and delete its local files: only the DVC snapshot is left.
    clear_pin(settings, "demo")
    v3 = run_index(_index(tmp_path, TOKENS | {"max_tokens": 9}, keep=1), settings, embedder=FakeEmbedder(),
                   target=memory_target)  # fmt: skip
    with open_client(memory_target) as client:
        names = {c.name for c in client.get_collections().collections}
    assert v1.published.collection not in names  # pruned: keep=1 besides the live v3 keeps only v2
    shutil.rmtree(VersionStore(settings, "demo").version_dir(v1.version))
    shutil.rmtree(registry.root / ".dvc" / "cache")

    _no_embedding(monkeypatch)
    restored = rollback(cfg_now, settings, v1.version, reason="back to by_title", target=memory_target)
    assert restored.restored_from_snapshot and restored.from_version == v3.version
    assert _points(memory_target, v1.published.collection) == v1_points  # point for point, vectors included
    with open_client(memory_target) as client:
        assert alias_target(client, "demo") == v1.published.collection

    audit = [e for e in read_audit(settings, "demo") if e["action"] == "rollback"]
    assert [(e["from_version"], e["to_version"]) for e in audit] == [(v2.version, v1.version), (v3.version, v1.version)]
    assert audit[-1]["reason"] == "back to by_title" and audit[-1]["restored_from_snapshot"] is True


def test_editing_the_index_file_ends_the_pin(tmp_path: Path, settings: Settings, memory_target: QdrantTarget) -> None:
    v1 = run_index(_index(tmp_path, BY_TITLE), settings, embedder=FakeEmbedder(), target=memory_target)
    run_index(_index(tmp_path, TOKENS), settings, embedder=FakeEmbedder(), target=memory_target)
    rollback(_index(tmp_path, TOKENS), settings, v1.version, reason="bad tokens run", target=memory_target)
    assert read_pin(settings, "demo")["version"] == v1.version  # type: ignore[index]
    edited = _index(tmp_path, TOKENS | {"max_tokens": 12})
    v3 = run_index(edited, settings, embedder=FakeEmbedder(), target=memory_target)
    assert read_pin(settings, "demo") is None
    assert v3.manifest.effective_config["chunking"]["max_tokens"] == 12


def test_a_pin_outlives_a_release_that_adds_a_defaulted_option(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    from groundwork.config import ChunkingConfig

    class NewerChunking(ChunkingConfig):  # what a later groundwork release could ship
        new_option: int = 7

    class NewerIndex(IndexConfig):
        chunking: NewerChunking = NewerChunking()
        another_new_option: bool = True

    v1 = run_index(_index(tmp_path, BY_TITLE), settings, embedder=FakeEmbedder(), target=memory_target)
    run_index(_index(tmp_path, TOKENS), settings, embedder=FakeEmbedder(), target=memory_target)
    rollback(_index(tmp_path, TOKENS), settings, v1.version, reason="bad tokens run", target=memory_target)
    upgraded = _index(tmp_path, TOKENS)
    upgraded = NewerIndex.model_validate(upgraded.model_dump(exclude_unset=True) | {"source_file": None})
    assert upgraded.model_dump()["another_new_option"] is True
    from groundwork.lifecycle import effective_config

    pinned = effective_config(upgraded, settings)  # type: ignore[arg-type]
    assert read_pin(settings, "demo")["version"] == v1.version  # type: ignore[index]
    assert pinned.chunking.strategy == "by_title"


def test_unknown_version_fails_clearly_and_changes_nothing(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = _index(tmp_path, BY_TITLE)
    v1 = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    with pytest.raises(NotFoundError, match="no version '20990101T000000Z-deadbeef'"):
        rollback(cfg, settings, "20990101T000000Z-deadbeef", reason="typo", target=memory_target)
    with pytest.raises(ConfigError, match="needs a reason"):
        rollback(cfg, settings, v1.version, reason=" ", target=memory_target)
    with open_client(memory_target) as client:
        assert alias_target(client, "demo") == v1.published.collection
    assert read_pin(settings, "demo") is None and read_audit(settings, "demo") == []


def test_diff_lists_config_documents_and_chunks(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    v1 = run_index(_index(tmp_path, BY_TITLE), settings, embedder=FakeEmbedder(), target=memory_target)
    (tmp_path / "docs" / "delta.md").write_text("# Delta\n\nDelta drones fly in formation.\n")
    (tmp_path / "docs" / "gamma.txt").unlink()
    v2 = run_index(_index(tmp_path, BY_TITLE), settings, embedder=FakeEmbedder(), target=memory_target)
    diff = diff_versions(settings, "demo", v1.version, v2.version)
    assert diff.documents_added == ["docs:delta.md"] and diff.documents_removed == ["docs:gamma.txt"]
    assert diff.config_changes == [] and diff.chunks_added == 1 and diff.chunks_removed == 1
    text = diff.describe()
    assert "docs:delta.md" in text and "+1 -1" in text
