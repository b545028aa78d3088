"""The whole refresh in one process (fake embedder, in-memory Qdrant): versions, diffs, carry-over."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from groundwork.chunk_table import chunk_schema
from groundwork.embedding_cache import EmbeddingCache
from groundwork.errors import SourceError
from groundwork.pipeline import run_index
from groundwork.search import search
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, alias_target, open_client
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, make_index


def _run(cfg, settings, embedder, target, **kw):  # type: ignore[no-untyped-def]
    return run_index(cfg, settings, embedder=embedder, cache=EmbeddingCache(settings.cache_path), target=target, **kw)


def test_first_run_publishes_every_document(tmp_path: Path, settings: Settings, memory_target: QdrantTarget) -> None:
    cfg = make_index(tmp_path)
    embedder = FakeEmbedder()
    result = _run(cfg, settings, embedder, memory_target)

    docs = result.manifest.counts["documents"]
    assert docs["new"] == 3 and docs["total"] == 3 and docs["deleted"] == 0
    table = pq.read_table(VersionStore(settings, "demo").chunks_path(result.version))
    assert table.schema.equals(chunk_schema(32), check_metadata=False)
    assert set(table.column("version").to_pylist()) == {result.version}
    assert result.published.points == table.num_rows
    with open_client(memory_target) as client:
        assert alias_target(client, "demo") == f"demo__{result.version}"
        hits = search(client, "demo", embedder, "brass gears spring", limit=1)
    assert hits[0].payload["doc_id"] == "docs:alpha.md"
    assert hits[0].payload["heading_path"][0] == "Alpha guide"
    assert hits[0].payload["language"] == "eng"


def test_unchanged_run_keeps_live_version_and_embeds_nothing(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    first = _run(cfg, settings, FakeEmbedder(), memory_target)
    embedder = FakeEmbedder()
    second = _run(cfg, settings, embedder, memory_target)
    assert second.version == first.version
    assert not second.created and not second.published.changed
    assert embedder.encoded == []


def test_edit_and_delete_reprocess_only_what_changed(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    first = _run(cfg, settings, FakeEmbedder(), memory_target)
    docs = tmp_path / "docs"
    (docs / "gamma.txt").write_text("Gamma reports now include a carbon footprint section.\n")
    (docs / "beta.md").unlink()

    embedder = FakeEmbedder()
    second = _run(cfg, settings, embedder, memory_target)
    counts = second.manifest.counts["documents"]
    assert (counts["changed"], counts["deleted"], counts["unchanged"], counts["new"]) == (1, 1, 1, 0)
    assert embedder.encoded == ["Gamma reports now include a carbon footprint section."]
    assert second.manifest.parent == first.version

    table = pq.read_table(VersionStore(settings, "demo").chunks_path(second.version))
    assert "docs:beta.md" not in set(table.column("doc_id").to_pylist())
    with open_client(memory_target) as client:
        assert client.count("demo", exact=True).count == table.num_rows
        assert alias_target(client, "demo") == f"demo__{second.version}"


def test_chunking_change_rechunks_but_reuses_cached_vectors(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    _run(cfg, settings, FakeEmbedder(), memory_target)
    # Same texts (every section is shorter than both limits), different fingerprint.
    changed = make_index(tmp_path, chunking={"strategy": "by_title", "max_characters": 500, "new_after_n_chars": 350})
    embedder = FakeEmbedder()
    result = _run(changed, settings, embedder, memory_target)
    assert result.created
    assert result.manifest.counts["documents"]["changed"] == 3
    assert embedder.encoded == []
    assert result.manifest.counts["chunks"]["reused"] == result.manifest.counts["chunks"]["total"]


def test_unparseable_file_is_skipped_and_recorded(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4\n this is not really a pdf")
    (tmp_path / "docs" / "picture.png").write_bytes(b"\x89PNG\r\n")
    result = _run(cfg, settings, FakeEmbedder(), memory_target)
    skipped = {Path(s["uri"]).name: s for s in result.manifest.skipped}
    assert set(skipped) == {"broken.pdf", "picture.png"}
    assert skipped["picture.png"]["error_type"] == "UnsupportedFileType"
    assert skipped["broken.pdf"]["message"]
    assert result.manifest.counts["documents"]["total"] == 3


def test_a_run_that_only_adds_an_unparseable_file_says_so_without_a_new_version(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    from groundwork.pipeline import summarize

    cfg = make_index(tmp_path)
    first = _run(cfg, settings, FakeEmbedder(), memory_target)
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4\n this is not really a pdf")
    (tmp_path / "docs" / "picture.png").write_bytes(b"\x89PNG\r\n")  # never a document: not announced
    again = _run(cfg, settings, FakeEmbedder(), memory_target)
    assert not again.created and again.version == first.version  # the index's content did not change
    assert [Path(s["uri"]).name for s in again.skipped] == ["broken.pdf"]
    text = summarize(again.manifest, again.created, again.skipped)
    assert "no new content" in text and "quarantined by this run: 1" in text and "broken.pdf" in text
    quiet = _run(cfg, settings, FakeEmbedder(), memory_target)  # still broken: said again, still no version
    assert not quiet.created and [Path(s["uri"]).name for s in quiet.skipped] == ["broken.pdf"]
    (tmp_path / "docs" / "broken.pdf").unlink()
    clean = _run(cfg, settings, FakeEmbedder(), memory_target)
    assert not clean.created and clean.skipped == []
    assert summarize(clean.manifest, clean.created, clean.skipped).endswith("stays live")


def test_missing_source_fails_before_publishing(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    first = _run(cfg, settings, FakeEmbedder(), memory_target)
    broken = make_index(tmp_path, sources=[{"name": "docs", "type": "files", "path": str(tmp_path / "gone")}])
    with pytest.raises(SourceError, match="does not exist"):
        _run(broken, settings, FakeEmbedder(), memory_target)
    assert VersionStore(settings, "demo").live().version == first.version  # type: ignore[union-attr]


def test_emptied_source_is_not_read_as_deleting_everything(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path)
    _run(cfg, settings, FakeEmbedder(), memory_target)
    for file in (tmp_path / "docs").iterdir():
        file.unlink()
    with pytest.raises(SourceError, match="listed no documents"):
        _run(cfg, settings, FakeEmbedder(), memory_target)
