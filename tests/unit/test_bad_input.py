"""Bad input, generated here, in whole runs beside good documents (fake embedder, in-memory Qdrant).

Every bad file is quarantined with its error type and a clear message (in the
manifest's ``skipped`` and in ``quarantine.parquet``), every good document is
indexed, and when too many files are bad the gate blocks the run and the live
version stays as it was. A 50 MB text file is processed in a subprocess whose
peak memory is measured.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pikepdf
import pyarrow.parquet as pq
import pytest

from groundwork.embedding_cache import EmbeddingCache
from groundwork.errors import SourceError, ValidationFailed
from groundwork.pipeline import RunResult, run_index
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, alias_target, open_client
from groundwork.versions import VersionStore
from tests.conftest import DOCS, REPO_ROOT, FakeEmbedder, make_index, write_docs

PDF_LINES = [f"Line {i} of the quarterly widget report on gears and springs." for i in range(30)]


def _pdf(lines: list[str]) -> pikepdf.Pdf:
    """A real one-page PDF with extractable text (Helvetica, no embedded font)."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica)
    )
    page = pdf.add_blank_page(page_size=(612, 792))
    page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
    ops = [f"BT /F1 11 Tf 72 {740 - 16 * i} Td ({line}) Tj ET" for i, line in enumerate(lines)]
    page.Contents = pdf.make_stream("\n".join(ops).encode())
    return pdf


# File name -> (error type, words the message must contain). Stage "discover" for what listing rejects.
BAD_FILES: dict[str, tuple[str, str]] = {
    "truncated.pdf": ("CorruptDocument", "not a readable PDF"),
    "encrypted.pdf": ("EncryptedDocument", "the PDF is encrypted and needs a password"),
    "empty.txt": ("EmptyFile", "the file is empty (0 bytes)"),
    "random.pdf": ("CorruptDocument", "not a readable PDF"),
    "random.docx": ("CorruptDocument", "not a valid DOCX file (it is not a zip archive)"),
    "nested.html": ("TooDeeplyNested", "HTML nested deeper than 255 elements"),
    "bomb.docx": ("ArchiveTooLarge", "over the limit of 1048576 (max_uncompressed_mb); a zip bomb?"),
    "escape.md": ("SymlinkOutsideSource", "symlink points outside the source folder"),
    "linked": ("SymlinkOutsideSource", "symlink points outside the source folder"),
}
DISCOVERY_ERRORS = {"EmptyFile", "SymlinkOutsideSource"}
# CSV line -> the whole message recorded for it (pyarrow reports no line numbers, so the line's text identifies it).
RAGGED = {
    "2,Too,many,fields": "expected 2 fields, found 4: '2,Too,many,fields'",
    "4": "expected 2 fields, found 1: '4'",
}

GOOD_FILES = {
    "alpha.md", "beta.md", "gamma.txt", "report.pdf", "utf16.txt", "utf16-nobom.txt", "latin1.txt",
    "meeting notes ü.md", "sub folder/Ñandú report 2024.txt", "日本語 メモ.txt", "legacy.html",
}  # fmt: skip
GOOD_ROWS = {"rows:1", "rows:3", "rows:6"}
SECRET = "launch codes for the outside world"


CSV_LINES = [
    "id,body",
    "1,Sprockets are cleaned every week.",
    "2,Too,many,fields",
    "3,Pulleys need a new belt every spring.",
    "4",
    '6,"Quoted text, with commas, is one field."',
]


def _write_good(tmp_path: Path) -> Path:
    """The good documents: a real PDF, other encodings, awkward names, clean CSV rows."""
    docs = write_docs(tmp_path / "docs", DOCS)
    _pdf(PDF_LINES).save(docs / "report.pdf")
    (docs / "utf16.txt").write_text("Café crème brûlée is served at the winter market.\n", encoding="utf-16")
    (docs / "utf16-nobom.txt").write_bytes("Zoë\u2019s naïve façade survives UTF-16, no BOM.\n".encode("utf-16-le"))
    (docs / "latin1.txt").write_bytes("Café crème au lait, déjà vu à Noël chez Loïc.\n".encode("latin-1"))
    (docs / "meeting notes ü.md").write_text("# Meeting\n\nThe über-team agreed on sprocket sizes.\n")
    (docs / "sub folder").mkdir()
    (docs / "sub folder" / "Ñandú report 2024.txt").write_text("The rhea population report counts pulleys.\n")
    (docs / "日本語 メモ.txt").write_text("Memo about lathes, written in a folder with a Japanese name.\n")
    # Valid HTML that omits optional end tags: hundreds of <p>, <li> and <td> left open are siblings, not nesting.
    (docs / "legacy.html").write_text(
        "<html><body><h1>Parts</h1>"
        + "".join(f"<p>Paragraph {i} on bearings." for i in range(300))
        + "<ul>" + "".join(f"<li>Part {i}" for i in range(300)) + "</ul>"
        + "<table>" + "".join(f"<tr><td>Row {i}<td>bolt {i}" for i in range(300)) + "</table>"
        + "<p>The end of the legacy page.</body></html>"
    )  # fmt: skip
    (tmp_path / "rows.csv").write_text("\n".join(line for line in CSV_LINES if line not in RAGGED) + "\n")
    return docs


def _write_bad(tmp_path: Path) -> None:
    """Every kind of bad file beside the good ones, and ragged rows in the CSV."""
    docs = tmp_path / "docs"
    good_pdf = (docs / "report.pdf").read_bytes()
    (docs / "truncated.pdf").write_bytes(good_pdf[: len(good_pdf) // 2])
    _pdf(PDF_LINES).save(docs / "encrypted.pdf", encryption=pikepdf.Encryption(user="reader", owner="owner"))
    (docs / "empty.txt").write_bytes(b"")
    rng = random.Random(1)
    (docs / "random.pdf").write_bytes(rng.randbytes(8192))
    (docs / "random.docx").write_bytes(rng.randbytes(8192))
    (docs / "nested.html").write_text(
        "<html><body>" + "<div>" * 6000 + "<p>deep down</p>" + "</div>" * 6000 + "</body></html>"
    )
    with zipfile.ZipFile(docs / "bomb.docx", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (8 * 1024 * 1024))
    assert (docs / "bomb.docx").stat().st_size < 64 * 1024  # small on disk, 8 MB expanded
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(f"# Secret\n\nThe {SECRET}.\n")
    (docs / "escape.md").symlink_to(outside / "secret.md")
    (docs / "linked").symlink_to(outside, target_is_directory=True)
    (tmp_path / "rows.csv").write_text("\n".join(CSV_LINES) + "\n")


def _index(tmp_path: Path, **validation: Any) -> Any:
    return make_index(
        tmp_path,
        sources=[
            {"name": "docs", "type": "files", "path": str(tmp_path / "docs"), "languages": ["eng"],
             "max_uncompressed_mb": 1},
            {"name": "rows", "type": "table", "path": str(tmp_path / "rows.csv"), "key": "id", "text": "{body}",
             "language": "eng"},
        ],
        validation={"max_document_drift": None, "max_chunk_drift": None, **validation},
    )  # fmt: skip


def _run(cfg, settings, target, **kw) -> RunResult:  # type: ignore[no-untyped-def]
    return run_index(
        cfg, settings, embedder=FakeEmbedder(), cache=EmbeddingCache(settings.cache_path), target=target, **kw
    )


def _state(settings: Settings, target: QdrantTarget) -> dict[str, Any]:
    live = VersionStore(settings, "demo").root / "live.json"
    with open_client(target) as client:
        aliases = sorted((a.alias_name, a.collection_name) for a in client.get_aliases().aliases)
        collections = {c.name: client.count(c.name, exact=True).count for c in client.get_collections().collections}
    return {"live": live.read_bytes() if live.is_file() else None, "aliases": aliases, "collections": collections}


def _by_name(entries: list[dict[str, Any]], docs: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for entry in entries:
        if entry["error_type"] == "RaggedRow":
            key = f"ragged: {entry['message']}"
        else:
            key = Path(entry["uri"]).relative_to(docs).as_posix()
        assert key not in out, f"{key} recorded twice"
        out[key] = entry
    return out


def _assert_quarantined(entries: list[dict[str, Any]], docs: Path, tmp_path: Path) -> None:
    found = _by_name(entries, docs)
    assert set(found) == set(BAD_FILES) | {f"ragged: {m}" for m in RAGGED.values()}, "only bad files and rows"
    for name, (error_type, words) in BAD_FILES.items():
        entry = found[name]
        assert entry["error_type"] == error_type, entry
        assert words in entry["message"], entry
        assert entry["source"] == "docs"
        assert entry["stage"] == ("discover" if error_type in DISCOVERY_ERRORS else "partition"), entry
    for message in RAGGED.values():
        entry = found[f"ragged: {message}"]
        assert entry["uri"].startswith(str(tmp_path / "rows.csv")), entry
        assert entry["source"] == "rows" and entry["stage"] == "discover"


def test_bad_files_are_quarantined_and_good_documents_indexed(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    docs = _write_good(tmp_path)
    _write_bad(tmp_path)
    result = _run(_index(tmp_path, max_quarantine_share=0.9), settings, memory_target, run_id="bad_input_1")
    store = VersionStore(settings, "demo")

    # The manifest and the quarantine table say the same, file by file.
    _assert_quarantined(result.manifest.skipped, docs, tmp_path)
    quarantine = pq.read_table(store.version_dir(result.version) / "quarantine.parquet").to_pylist()
    _assert_quarantined(quarantine, docs, tmp_path)
    assert {q["run_id"] for q in quarantine} == {"bad_input_1"}
    assert result.manifest.validation is not None and result.manifest.validation["success"] is True

    # Every good document is indexed, and nothing else.
    table = pq.read_table(store.chunks_path(result.version), columns=["doc_id", "uri", "text"]).to_pylist()
    texts: dict[str, str] = {}
    for row in table:
        texts[row["doc_id"]] = texts.get(row["doc_id"], "") + "\n" + row["text"]
    assert set(texts) == {f"docs:{name}" for name in GOOD_FILES} | GOOD_ROWS
    assert result.manifest.counts["documents"]["total"] == len(GOOD_FILES) + len(GOOD_ROWS)
    with open_client(memory_target) as client:
        assert client.count("demo", exact=True).count == len(table)
        assert alias_target(client, "demo") == f"demo__{result.version}"

    # Text files in other encodings are decoded, not mangled.
    assert "Café crème brûlée is served at the winter market." in texts["docs:utf16.txt"]
    assert "Zoë\u2019s naïve façade survives UTF-16, no BOM." in texts["docs:utf16-nobom.txt"]
    assert "Café crème au lait, déjà vu à Noël chez Loïc." in texts["docs:latin1.txt"]
    assert not any("\ufffd" in t or "\x00" in t for t in texts.values())
    # Names with spaces and non-ASCII characters, a real PDF, and the rows around the ragged ones.
    assert "über-team agreed on sprocket sizes" in texts["docs:meeting notes ü.md"]
    assert "rhea population report" in texts["docs:sub folder/Ñandú report 2024.txt"]
    assert "Memo about lathes" in texts["docs:日本語 メモ.txt"]
    assert "Line 29 of the quarterly widget report" in texts["docs:report.pdf"]
    legacy = texts["docs:legacy.html"]
    assert all(t in legacy for t in ("Paragraph 299 on bearings.", "Part 299", "bolt 299", "end of the legacy page"))
    assert texts["rows:6"].strip() == "Quoted text, with commas, is one field."
    # The symlinks were not followed.
    assert not any(SECRET in t for t in texts.values())
    assert not any("outside" in row["uri"] for row in table)


def test_too_many_bad_files_block_the_gate_and_keep_the_live_version(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    docs = _write_good(tmp_path)
    cfg = _index(tmp_path)  # the default max_quarantine_share (0.3)
    good = _run(cfg, settings, memory_target)
    assert good.manifest.skipped == []
    before = _state(settings, memory_target)

    _write_bad(tmp_path)
    # One good change too: a run whose only news is unparseable files changes no content and makes no version.
    (docs / "new.txt").write_text("A new and perfectly good note about flywheels.\n")

    with pytest.raises(ValidationFailed) as info:
        _run(cfg, settings, memory_target)
    message = str(info.value)
    assert "expect_column_mean_to_be_between on quarantined: observed " in message
    assert "expected {'max_value': 0.3}" in message
    # Example rows name the files and say why they were left out.
    assert '"error": "ArchiveTooLarge: expands to 8388616 bytes, over the limit of 1048576' in message
    assert '"error": "RaggedRow: expected 2 fields, found 4: \'2,Too,many,fields\'"' in message
    assert _state(settings, memory_target) == before
    store = VersionStore(settings, "demo")
    assert store.live().version == good.version  # type: ignore[union-attr]
    (rejected,) = set(store.versions()) - {good.version}
    manifest = store.manifest(rejected)
    assert manifest.validation is not None
    assert manifest.validation["failed"] == ["expect_column_mean_to_be_between(quarantined)"]
    # The rejected candidate still records what was wrong with each file.
    _assert_quarantined(manifest.skipped, docs, tmp_path)
    quarantine = pq.read_table(store.version_dir(rejected) / "quarantine.parquet").to_pylist()
    assert {q["error_type"] for q in quarantine} == {e for e, _ in BAD_FILES.values()} | {"RaggedRow"}


def test_unreachable_sql_source_fails_before_publishing(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    _write_good(tmp_path)
    good = _run(_index(tmp_path), settings, memory_target)
    before = _state(settings, memory_target)
    versions = VersionStore(settings, "demo").versions()

    cfg = make_index(
        tmp_path,
        sources=[
            {"name": "docs", "type": "files", "path": str(tmp_path / "docs"), "languages": ["eng"]},
            {"name": "crm", "type": "sql", "url": "postgresql+psycopg://u:pw@127.0.0.1:1/db",
             "query": "SELECT id, body FROM notes", "key": "id", "text": "{body}"},
        ],
    )  # fmt: skip
    with pytest.raises(SourceError) as info:
        _run(cfg, settings, memory_target)
    message = str(info.value)
    assert "source 'crm'" in message and "127.0.0.1:1" in message
    assert ":pw@" not in message and "u:***@127.0.0.1:1/db" in message  # never the password
    assert _state(settings, memory_target) == before
    store = VersionStore(settings, "demo")
    assert store.versions() == versions
    assert store.live().version == good.version  # type: ignore[union-attr]


# -- a 50 MB text file ----------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path

    sys.path[:0] = [sys.argv[3] + "/include", sys.argv[3]]  # this checkout's groundwork and tests
    import groundwork.pipeline as pipeline
    from groundwork.config import parse_index
    from groundwork.embedding_cache import EmbeddingCache
    from groundwork.settings import Settings
    from groundwork.vectorstore import QdrantTarget
    from tests.conftest import FakeEmbedder

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    class Lean(FakeEmbedder):
        def encode(self, texts):  # the fixture's record of every text would cost memory here
            out = super().encode(texts)
            self.encoded.clear()
            return out

    peaks = {}
    process_batch = pipeline.process_batch

    def measured(*args, **kwargs):
        out = process_batch(*args, **kwargs)
        peaks["processing"] = peak_mb()
        return out

    pipeline.process_batch = measured
    folder, home = Path(sys.argv[1]), Path(sys.argv[2])
    settings = Settings(home=home, indexes_dir=home / "indexes")
    cfg = parse_index({
        "name": "big",
        "sources": [{"name": "docs", "type": "files", "path": str(folder), "languages": ["eng"]}],
        "chunking": {"strategy": "by_title", "max_characters": 2000, "new_after_n_chars": 1500},
        "qdrant": {"location": ":memory:"},
        "snapshots": {"enabled": False},
    })
    result = pipeline.run_index(
        cfg, settings, embedder=Lean(max_tokens=512), cache=EmbeddingCache(settings.cache_path),
        target=QdrantTarget(kind="memory"),
    )
    print(json.dumps({"version": result.version, "processing_mb": peaks["processing"], "total_mb": peak_mb(),
                      "skipped": result.manifest.skipped, "timings": result.manifest.timings_s}))
    """
)

# Linux keeps a process's peak RSS across exec, so a child started straight from this (large) test
# process would report at least this process's size. A small launcher forks the measured child instead.
_LAUNCH = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"

BIG_BYTES = 50 * 1024 * 1024
# Processing the file in ~1 MB segments peaks near 0.65 GB (most of it the libraries); the same run
# with the whole file partitioned at once (SEGMENT_CHARS raised past its size) peaks near 1.4 GB.
PEAK_LIMIT_MB = 1000


def _write_big(path: Path, size: int) -> int:
    """Distinct paragraphs, each starting with a marker word ``para<number>``; returns their count."""
    words = "alpha beta gamma delta widget gear spring oil battery solar finance quarter revenue valve pump".split()
    rng = random.Random(50)
    count = written = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < size:
            para = f"para{count:06d} " + " ".join(rng.choices(words, k=110)) + ".\n\n"
            fh.write(para)
            written += len(para)
            count += 1
    return count


def test_50_mb_text_file_is_processed_in_bounded_memory(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", DOCS)
    paragraphs = _write_big(docs / "big.txt", BIG_BYTES)
    assert (docs / "big.txt").stat().st_size >= BIG_BYTES
    home = tmp_path / "data"

    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCH, sys.executable, "-c", _CHILD, str(docs), str(home), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=540, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"\n50 MB text file: peak RSS {report['processing_mb']:.0f} MB after processing "
        f"({report['total_mb']:.0f} MB for the whole run incl. validation and in-memory Qdrant); "
        f"timings {report['timings']}"
    )
    assert report["skipped"] == []
    assert report["processing_mb"] < PEAK_LIMIT_MB

    # Nothing was lost or repeated at the segment boundaries: every paragraph marker is there once.
    store = VersionStore(Settings(home=home, indexes_dir=home / "indexes"), "big")
    table = pq.read_table(store.chunks_path(report["version"]), columns=["doc_id", "text"])
    big = [t for d, t in zip(*(table.column(c).to_pylist() for c in ("doc_id", "text")), strict=True)
           if d == "docs:big.txt"]  # fmt: skip
    markers = re.findall(r"para(\d{6})", "\n".join(big))
    assert len(markers) == paragraphs
    assert sorted(set(map(int, markers))) == list(range(paragraphs))
    assert set(table.column("doc_id").to_pylist()) == {"docs:big.txt", *(f"docs:{n}" for n in DOCS)}
