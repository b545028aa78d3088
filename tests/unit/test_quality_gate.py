"""The quality gate over whole runs (fake embedder, in-memory Qdrant).

Every default expectation is made to fail by a run that breaks it, after a
passing run made a version live: the run raises ValidationFailed naming the
expectation, its observed value and example rows, writes Data Docs, and leaves
the live version and Qdrant exactly as they were. A forced run publishes past
the gate and records why.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from groundwork.embedding_cache import EmbeddingCache
from groundwork.errors import ConfigError, ValidationFailed
from groundwork.pipeline import RunResult, run_index
from groundwork.settings import Settings
from groundwork.validation import require_reason
from groundwork.vectorstore import QdrantTarget, alias_target, open_client
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, make_index

# Drift is off unless a test is about it: the other tests add documents on purpose.
NO_DRIFT = {"max_document_drift": None, "max_chunk_drift": None}


def _run(cfg, settings, target, embedder=None, **kw) -> RunResult:  # type: ignore[no-untyped-def]
    embedder = embedder or FakeEmbedder()
    return run_index(cfg, settings, embedder=embedder, cache=EmbeddingCache(settings.cache_path), target=target, **kw)


def _state(settings: Settings, target: QdrantTarget, index: str = "demo") -> dict[str, Any]:
    """Everything a failed gate must leave alone: live.json byte for byte, aliases, collections and their sizes."""
    live = VersionStore(settings, index).root / "live.json"
    with open_client(target) as client:
        aliases = sorted((a.alias_name, a.collection_name) for a in client.get_aliases().aliases)
        collections = {c.name: client.count(c.name, exact=True).count for c in client.get_collections().collections}
    return {"live": live.read_bytes() if live.is_file() else None, "aliases": aliases, "collections": collections}


def _write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).strip() + "\n", encoding="utf-8")


def _failed_run(cfg, settings, target, embedder=None, **kw) -> tuple[ValidationFailed, str]:  # type: ignore[no-untyped-def]
    """Run expecting the gate to fail; assert nothing moved; return the error and the rejected version."""
    store = VersionStore(settings, cfg.name)
    before_versions = set(store.versions())
    before = _state(settings, target, cfg.name)
    with pytest.raises(ValidationFailed) as info:
        _run(cfg, settings, target, embedder, **kw)
    assert _state(settings, target, cfg.name) == before
    (candidate,) = set(store.versions()) - before_versions
    with open_client(target) as client:
        assert not client.collection_exists(f"{cfg.name}__{candidate}")
        assert alias_target(client, cfg.name) != f"{cfg.name}__{candidate}"
    manifest = store.manifest(candidate)
    assert manifest.validation is not None and manifest.validation["success"] is False
    assert manifest.validation["forced"] is False
    # Data Docs of a failed validation too, and the error points at them.
    docs = store.version_dir(candidate) / "validation" / "index.html"
    assert docs.is_file()
    assert manifest.validation["data_docs"] == str(docs)
    assert f"Data Docs: {docs}" in str(info.value)
    report = json.loads((store.version_dir(candidate) / "validation.json").read_text())
    assert report["success"] is False and report["failed"] == manifest.validation["failed"]
    return info.value, candidate


# -- a passing gate -------------------------------------------------------------------------------


def test_passing_run_writes_report_and_data_docs(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    result = _run(make_index(tmp_path), settings, memory_target)
    store = VersionStore(settings, "demo")
    vdir = store.version_dir(result.version)

    report = json.loads((vdir / "validation.json").read_text())
    assert report["success"] is True and report["failed"] == [] and report["forced"] is False
    names = {o["expectation"] for o in report["outcomes"]}
    assert {
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
        "expect_column_mean_to_be_between",
        "expect_column_values_to_be_in_set",
    } <= names
    assert all(o["success"] for o in report["outcomes"])
    # Both suites are rendered: an index page plus one validation page per suite.
    site = vdir / "validation"
    assert (site / "index.html").is_file()
    pages = sorted(p.parts[-4] for p in (site / "validations").rglob("*.html"))
    assert pages == ["groundwork_chunks", "groundwork_documents"]

    gate = result.manifest.validation
    assert gate is not None
    assert gate["success"] is True and gate["forced"] is False and gate["reason"] is None
    assert gate["data_docs"] == str(site / "index.html")
    assert "validate" in result.manifest.timings_s


# -- each default expectation can block -----------------------------------------------------------


@dataclass
class Case:
    """A baseline that passes, then a change that breaks exactly one kind of expectation."""

    validation: dict[str, Any]
    breaks: Callable[[Path], None]
    failed: list[str]
    observed: list[str]
    examples: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)
    run_kw: dict[str, Any] = field(default_factory=dict)


LONG = "Long-winded " + " ".join(f"paragraph{i} about widgets and gears" for i in range(12)) + "."


def _add_long(tmp: Path) -> None:
    _write(tmp / "docs", {"long.txt": LONG})


def _add_unowned_row(tmp: Path) -> None:
    (tmp / "people.csv").write_text("id,body,owner\n1,Ada writes the alpha manual.,ada\n2,Nobody owns this row.,\n")


def _add_french(tmp: Path) -> None:
    _write(tmp / "french", {"note.txt": "Les rapports gamma sont rédigés chaque trimestre par l'équipe."})


def _add_copies(tmp: Path) -> None:
    _write(tmp / "docs", {f"copy{i}.txt": "The same boilerplate disclaimer, pasted everywhere." for i in range(10)})


def _add_broken_pdfs(tmp: Path) -> None:
    # A good new document too: a run whose only news is unparseable files changes no content and makes no version.
    _write(tmp / "docs", {"fresh.txt": "A fresh note on epsilon valves."})
    for i in range(5):
        (tmp / "docs" / f"broken{i}.pdf").write_bytes(b"%PDF-1.4\n garbage " + bytes([i]) * 50)


def _add_blank_files(tmp: Path) -> None:
    _write(tmp / "docs", {"fresh.txt": "A fresh note on epsilon valves."})
    for i in range(3):
        (tmp / "docs" / f"blank{i}.txt").write_text("   \n\n\t  \n" * (i + 1))


def _delete_most(tmp: Path) -> None:
    for file in sorted((tmp / "docs").iterdir())[2:]:
        file.unlink()


PEOPLE_SOURCE = {
    "name": "people",
    "type": "table",
    "key": "id",
    "text": "{body}",
    "metadata_columns": ["owner"],
    "language": "eng",
}

CASES = {
    "max_chars": Case(
        validation={**NO_DRIFT, "max_chars": 300},
        breaks=_add_long,
        failed=["expect_column_values_to_be_between(char_count)"],
        observed=["observed '1 unexpected of "],
        examples=['"doc_id": "docs:long.txt"', '"text": "Long-winded paragraph0'],
    ),
    "required_metadata": Case(
        validation={**NO_DRIFT, "required_metadata": ["owner"]},
        breaks=_add_unowned_row,
        failed=["expect_column_values_to_not_be_null(meta.owner)"],
        observed=["observed '1 unexpected of "],
        examples=['"doc_id": "people:2"', '"text": "Nobody owns this row."'],
        # Files get a default owner; a row's own (empty) owner column overrides it.
        overrides={"enrichment": {"metadata": {"owner": "docs-team"}}},
    ),
    "allowed_languages": Case(
        validation={**NO_DRIFT, "allowed_languages": ["eng"]},
        breaks=_add_french,
        failed=["expect_column_values_to_be_in_set(language)"],
        observed=["observed '1 unexpected of "],
        examples=['"doc_id": "french:note.txt"'],
    ),
    "duplicate_share": Case(
        validation=NO_DRIFT,
        breaks=_add_copies,
        failed=["expect_column_mean_to_be_between(duplicate_text)"],
        observed=["expected {'max_value': 0.3}"],
        examples=['"doc_id": "docs:copy1.txt"', '"text": "The same boilerplate disclaimer'],
    ),
    "quarantine_share": Case(
        validation=NO_DRIFT,
        breaks=_add_broken_pdfs,
        failed=["expect_column_mean_to_be_between(quarantined)"],
        observed=["expected {'max_value': 0.3}"],
        examples=["broken0.pdf", '"error": "CorruptDocument: not a readable PDF'],
    ),
    "no_chunk_share": Case(
        validation=NO_DRIFT,
        breaks=_add_blank_files,
        failed=["expect_column_mean_to_be_between(no_chunks)"],
        observed=["expected {'max_value': 0.2}"],
        examples=["blank0.txt", '"error": "NoText: no text could be extracted'],
    ),
    "drift": Case(
        validation={"max_document_drift": 0.5, "max_chunk_drift": 0.5},
        breaks=_delete_most,
        failed=["expect_table_row_count_to_be_between", "expect_column_sum_to_be_between(kept)"],
        observed=[
            "expect_column_sum_to_be_between on kept: observed 3, expected {'min_value': 4.0, 'max_value': 14.0}"
        ],
        examples=['{"doc_id": "docs:extra0.txt", "change": "gone"}'],
        # Deleting on purpose passes the delete breaker; the gate still weighs the result.
        run_kw={"force_delete_reason": "shrinking the corpus on purpose"},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_default_expectation_blocks(
    name: str, tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    case = CASES[name]
    docs = tmp_path / "docs"
    make_index(tmp_path)  # writes the three default documents
    _write(docs, {f"extra{i}.txt": f"Extra note {i} on the care of delta {i} machines." for i in range(5)})
    (tmp_path / "people.csv").write_text("id,body,owner\n1,Ada writes the alpha manual.,ada\n")
    (tmp_path / "french").mkdir()
    sources: list[dict[str, Any]] = [
        {"name": "docs", "type": "files", "path": str(docs), "languages": ["eng"]},
        {**PEOPLE_SOURCE, "path": str(tmp_path / "people.csv")},
    ]
    cfg = make_index(tmp_path, sources=sources, validation=case.validation, **case.overrides)

    good = _run(cfg, settings, memory_target)
    assert good.manifest.validation is not None and good.manifest.validation["success"] is True

    case.breaks(tmp_path)
    if name == "allowed_languages":
        sources = [
            *sources,
            {"name": "french", "type": "files", "path": str(tmp_path / "french"), "languages": ["fra"]},
        ]
        cfg = make_index(tmp_path, sources=sources, validation=case.validation, **case.overrides)
    error, candidate = _failed_run(cfg, settings, memory_target, **case.run_kw)

    message = str(error)
    manifest = VersionStore(settings, "demo").manifest(candidate)
    assert manifest.validation is not None
    assert manifest.validation["failed"] == case.failed
    assert f"quality gate for {candidate}: FAILED ({len(case.failed)})" in message
    for expectation in case.failed:
        assert expectation.split("(")[0] in message
    for text in case.observed + case.examples:
        assert text in message
    report = json.loads((VersionStore(settings, "demo").version_dir(candidate) / "validation.json").read_text())
    failures = [o for o in report["outcomes"] if not o["success"]]
    assert len(failures) == len(case.failed)
    for outcome in failures:
        assert f"observed {outcome['observed']!r}" in message
        assert outcome["examples"], outcome
        if outcome["expectation"] == "expect_column_mean_to_be_between":
            assert outcome["observed"] > outcome["expected"]["max_value"]
    assert "e.g. {" in message
    assert VersionStore(settings, "demo").live().version == good.version  # type: ignore[union-attr]


# -- forcing past the gate ------------------------------------------------------------------------


def test_forced_run_publishes_past_a_failed_gate_and_records_why(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget
) -> None:
    cfg = make_index(tmp_path, validation=NO_DRIFT)
    first = _run(cfg, settings, memory_target)
    _add_copies(tmp_path)
    _failed_run(cfg, settings, memory_target)

    reason = "boilerplate disclaimers are expected this quarter (ticket OPS-42)"
    forced = _run(cfg, settings, memory_target, force_reason=reason)
    assert forced.created and forced.published.changed and forced.version != first.version
    gate = forced.manifest.validation
    assert gate is not None
    assert gate["success"] is False and gate["forced"] is True and gate["reason"] == reason
    assert gate["failed"] == ["expect_column_mean_to_be_between(duplicate_text)"]
    report = json.loads((VersionStore(settings, "demo").version_dir(forced.version) / "validation.json").read_text())
    assert report["forced"] is True and report["reason"] == reason
    assert VersionStore(settings, "demo").live().version == forced.version  # type: ignore[union-attr]
    with open_client(memory_target) as client:
        assert alias_target(client, "demo") == f"demo__{forced.version}"
        assert client.count("demo", exact=True).count == forced.manifest.counts["chunks"]["total"]


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_forcing_needs_a_reason(reason: str | None) -> None:
    with pytest.raises(ConfigError, match="needs a reason"):
        require_reason(True, reason)


def test_require_reason_passes_a_reason_through() -> None:
    assert require_reason(True, "  known issue  ") == "known issue"
    assert require_reason(False, None) is None
    assert require_reason(False, "ignored when not forcing") is None


# -- vectors --------------------------------------------------------------------------------------


class NaNEmbedder(FakeEmbedder):
    """Returns a NaN component for any text that mentions gamma."""

    def encode(self, texts):  # type: ignore[no-untyped-def]
        out = super().encode(texts)
        for i, text in enumerate(texts):
            if "gamma" in text.lower():
                out[i, 3] = np.nan
        return out


class UnnormalisedEmbedder(FakeEmbedder):
    """Vectors three times too long, as from a model run without normalisation."""

    def encode(self, texts):  # type: ignore[no-untyped-def]
        return super().encode(texts) * 3.0


def test_nan_vectors_are_caught(tmp_path: Path, settings: Settings, memory_target: QdrantTarget) -> None:
    error, candidate = _failed_run(make_index(tmp_path), settings, memory_target, NaNEmbedder())
    message = str(error)
    assert VersionStore(settings, "demo").manifest(candidate).validation["failed"] == [  # type: ignore[index]
        "expect_column_values_to_be_in_set(vector_finite)",
        "expect_column_values_to_not_be_null(vector_norm)",
    ]
    assert "expect_column_values_to_be_in_set on vector_finite: observed '1 unexpected of " in message
    assert '"doc_id": "docs:gamma.txt"' in message
    # First run: nothing was live, and nothing is now.
    assert _state(settings, memory_target) == {"live": None, "aliases": [], "collections": {}}


def test_unnormalised_vectors_are_caught(tmp_path: Path, settings: Settings, memory_target: QdrantTarget) -> None:
    cfg = make_index(tmp_path)
    error, candidate = _failed_run(cfg, settings, memory_target, UnnormalisedEmbedder())
    manifest = VersionStore(settings, "demo").manifest(candidate)
    total = manifest.counts["chunks"]["total"]
    assert manifest.validation["failed"] == ["expect_column_values_to_be_between(vector_norm)"]  # type: ignore[index]
    assert f"observed '{total} unexpected of {total}'" in str(error)
    assert "'min_value': 0.999, 'max_value': 1.001" in str(error)
    # The same vectors pass when the index does not promise normalised vectors.
    loose = make_index(tmp_path, embedding={"normalize": False})
    assert _run(loose, settings, memory_target, UnnormalisedEmbedder()).manifest.validation["success"] is True  # type: ignore[index]
