"""The quality gate: a Great Expectations suite over every candidate version.

Two GX batches are validated: the candidate's chunks (one row per chunk, with
vector dimension, finiteness and norm precomputed because GX has no vector
expectations) and its documents (one row per document the run knew of: kept,
or quarantined with a reason). The default expectations, each tunable in the
index's ``validation`` section:

* required columns present and not null; chunk ids unique;
* chunk text length within ``[min_chars, max_chars]``; token count within the
  model's sequence length;
* vector dimension equal to the model's, every component finite, norms within
  ``norm_tolerance`` of 1 when vectors are normalised;
* share of duplicate chunk texts, of documents that produced no chunk (silent
  extraction failures) and of quarantined documents, each under a threshold;
* declared metadata fields present; language in ``allowed_languages``;
* drift against the live version: document counts within a band, and chunk
  counts too when the chunking config did not change.

HTML Data Docs of every validation, passed or failed, are written beside the
version (``validation/index.html``). A failed gate raises
:class:`~groundwork.errors.ValidationFailed` listing each failed expectation
with its observed value and a few example rows, unless the run is forced with
a reason, which the report records. This module reads tables; it never
publishes.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from groundwork.chunk_table import PAYLOAD_COLUMNS, iter_batches
from groundwork.config import IndexConfig, ValidationConfig
from groundwork.errors import ConfigError, ValidationFailed
from groundwork.sources.skipped import OUT_OF_SCOPE
from groundwork.versions import Manifest, VersionStore, write_json_atomic

__all__ = ["ExpectationOutcome", "GateReport", "build_frames", "validate_version"]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ["chunk_id", "doc_id", "source", "uri", "text", "text_hash", "doc_hash", "version"]
# Documents whose partitioning "worked" but yielded nothing: silent extraction failures.
NO_CHUNK_ERRORS = {"NoText", "NoChunks", "EmptyText", "EmptyFile"}
# Columns whose mean is a share: the rows that count towards it are the examples of a failed share.
_FLAG_COLUMNS = {"duplicate_text", "quarantined", "no_chunks"}


@dataclass
class ExpectationOutcome:
    """One expectation's verdict, in words a person can act on."""

    expectation: str
    column: str | None
    success: bool
    observed: Any
    expected: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        where = f" on {self.column}" if self.column else ""
        text = f"{self.expectation}{where}: observed {self.observed!r}, expected {self.expected}"
        for ex in self.examples:
            text += f"\n      e.g. {json.dumps(ex, ensure_ascii=False, default=str)}"
        return text


@dataclass
class GateReport:
    """The outcome of the gate for one version."""

    version: str
    success: bool
    outcomes: list[ExpectationOutcome]
    data_docs: str
    forced: bool = False
    reason: str | None = None
    seconds: float = 0.0

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = [o.expectation + (f"({o.column})" if o.column else "") for o in self.failures]
        return data

    def describe(self) -> str:
        head = f"quality gate for {self.version}: " + ("passed" if self.success else f"FAILED ({len(self.failures)})")
        if self.forced:
            head += f" - published anyway (forced: {self.reason})"
        lines = [head, *[f"  - {o.describe()}" for o in self.failures], f"  Data Docs: {self.data_docs}"]
        return "\n".join(lines)


def build_frames(chunks_path: Path, manifest: Manifest, cfg: ValidationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(chunks, documents) frames of a version, vectors reduced to dim / finite / norm."""
    columns = [c for c in PAYLOAD_COLUMNS if c not in ("heading_path", "element_categories")]
    parts: list[pd.DataFrame] = []
    for batch in iter_batches(chunks_path, columns=[*columns, "embedding"]):
        emb = batch.column("embedding")
        dim = emb.type.list_size
        vectors = np.asarray(pc.list_flatten(emb).to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
        frame = batch.drop_columns(["embedding"]).to_pandas()
        frame["vector_dim"] = dim
        frame["vector_finite"] = np.isfinite(vectors).all(axis=1)
        frame["vector_norm"] = np.where(frame["vector_finite"], np.linalg.norm(np.nan_to_num(vectors), axis=1), np.nan)
        meta = [json.loads(m or "{}") for m in frame["metadata"]]
        for key in cfg.required_metadata:
            frame[f"meta.{key}"] = [m.get(key) for m in meta]
        parts.append(frame)
    chunks = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*columns, "vector_dim"])
    chunks["duplicate_text"] = chunks["text_hash"].duplicated(keep="first") if len(chunks) else []
    kept = chunks.groupby("doc_id").size() if len(chunks) else pd.Series(dtype=int)
    docs = pd.DataFrame(
        {"doc_id": kept.index, "chunks": kept.values, "quarantined": False, "no_chunks": False, "error": None}
    )
    skipped = pd.DataFrame(
        [
            {
                "doc_id": s["uri"],
                "chunks": 0,
                "quarantined": s["error_type"] not in NO_CHUNK_ERRORS,
                "no_chunks": s["error_type"] in NO_CHUNK_ERRORS,
                "error": f"{s['error_type']}: {s.get('message') or ''}"[:160],
            }
            for s in manifest.skipped
            if s["error_type"] not in OUT_OF_SCOPE
        ],
        columns=docs.columns,
    )
    documents = pd.concat([docs, skipped], ignore_index=True) if len(skipped) else docs
    documents["quarantined"] = documents["quarantined"].astype(float)
    documents["no_chunks"] = documents["no_chunks"].astype(float)
    return chunks, documents


def _chunk_expectations(
    cfg: ValidationConfig, dimension: int, max_tokens: int | None, normalized: bool, live: Manifest | None
) -> list[Any]:
    import great_expectations.expectations as gxe

    exps: list[Any] = [gxe.ExpectColumnToExist(column=c) for c in REQUIRED_COLUMNS]
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in REQUIRED_COLUMNS]
    exps += [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="chunk_id"),
        gxe.ExpectColumnValuesToBeBetween(column="char_count", min_value=cfg.min_chars, max_value=cfg.max_chars),
        gxe.ExpectColumnValuesToNotBeNull(column="char_count"),
        gxe.ExpectColumnValuesToBeBetween(column="vector_dim", min_value=dimension, max_value=dimension),
        gxe.ExpectColumnValuesToBeInSet(column="vector_finite", value_set=[True]),
        gxe.ExpectColumnMeanToBeBetween(column="duplicate_text", max_value=cfg.max_duplicate_share),
    ]
    if max_tokens is not None:
        exps.append(gxe.ExpectColumnValuesToBeBetween(column="token_count", min_value=1, max_value=max_tokens))
    if normalized:
        tol = cfg.norm_tolerance
        exps.append(gxe.ExpectColumnValuesToBeBetween(column="vector_norm", min_value=1 - tol, max_value=1 + tol))
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column="vector_norm"))
    for key in cfg.required_metadata:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=f"meta.{key}"))
    if cfg.allowed_languages:
        exps.append(gxe.ExpectColumnValuesToBeInSet(column="language", value_set=list(cfg.allowed_languages)))
    if live is not None and cfg.max_chunk_drift is not None:
        before = live.counts["chunks"]["total"]
        exps.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=int(before * (1 - cfg.max_chunk_drift)),
                max_value=int(np.ceil(before * (1 + cfg.max_chunk_drift))),
            )
        )
    return exps


def _document_expectations(cfg: ValidationConfig, live: Manifest | None) -> list[Any]:
    import great_expectations.expectations as gxe

    exps: list[Any] = [
        gxe.ExpectColumnMeanToBeBetween(column="quarantined", max_value=cfg.max_quarantine_share),
        gxe.ExpectColumnMeanToBeBetween(column="no_chunks", max_value=cfg.max_no_chunk_share),
    ]
    if live is not None and cfg.max_document_drift is not None:
        before = live.counts["documents"]["total"]
        exps.append(
            gxe.ExpectColumnSumToBeBetween(
                column="kept",
                min_value=int(before * (1 - cfg.max_document_drift)),
                max_value=int(np.ceil(before * (1 + cfg.max_document_drift))),
            )
        )
    return exps


def _gate_context(site_dir: Path) -> Any:
    """One ephemeral GX context for all suites of a version.

    One, not one per suite: the site index builder drops pages it has no stored
    result for, so a second context would delete the first suite's Data Docs.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    ctx.add_data_docs_site(
        site_name="groundwork",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    ctx.data_sources.add_pandas("candidate")
    return ctx


def _run_suite(ctx: Any, name: str, frame: pd.DataFrame, expectations: list[Any]) -> list[ExpectationOutcome]:
    import great_expectations as gx

    batch_def = ctx.data_sources.get("candidate").add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"groundwork_{name}", expectations=expectations))
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}_gate",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["groundwork"])],
            result_format={"result_format": "COMPLETE", "partial_unexpected_count": 5},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    outcomes = []
    for run in result.run_results.values():
        for r in run.results:
            conf = r.expectation_config
            if conf is None:
                continue
            kwargs = {k: v for k, v in conf.kwargs.items() if k not in ("column", "batch_id") and v is not None}
            res = r.result or {}
            observed = res.get("observed_value")
            if observed is None and "unexpected_count" in res:
                observed = f"{res['unexpected_count']} unexpected of {res.get('element_count')}"
            outcomes.append(
                ExpectationOutcome(
                    expectation=conf.type,
                    column=conf.kwargs.get("column"),
                    success=bool(r.success),
                    observed=_plain(observed),
                    expected=_plain(kwargs),
                    examples=[] if r.success else _examples(frame, res, conf.kwargs.get("column")),
                )
            )
    return outcomes


def _examples(
    frame: pd.DataFrame, result: dict[str, Any], column: str | None = None, limit: int = 3
) -> list[dict[str, Any]]:
    indexes = list(result.get("unexpected_index_list") or [])
    if not indexes and column in _FLAG_COLUMNS and column in frame.columns:
        # A share (column mean) names no unexpected rows: show rows that count towards it.
        indexes = [int(i) for i in np.flatnonzero(frame[column].astype(bool).to_numpy())[:limit]]
    rows = []
    for idx in indexes[:limit]:
        if isinstance(idx, dict):
            idx = next(iter(idx.values()), None)
        if isinstance(idx, int) and 0 <= idx < len(frame):
            row = frame.iloc[idx]
            keys = ("doc_id", "uri", "chunk_id", "error")
            rows.append({k: _plain(row[k]) for k in keys if k in frame.columns and _plain(row[k]) is not None})
            if "text" in frame.columns:
                rows[-1]["text"] = str(row["text"])[:80]
    return rows


def _is_drift(outcome: ExpectationOutcome) -> bool:
    if outcome.expectation == "expect_column_sum_to_be_between":
        return outcome.column == "kept"
    return outcome.expectation == "expect_table_row_count_to_be_between" and "max_value" in outcome.expected


def _drift_examples(
    outcomes: list[ExpectationOutcome], live_chunks: Path, chunks: pd.DataFrame, limit: int = 3
) -> None:
    """Counts name no rows: a failed drift shows documents the live version has and the candidate lacks (or new)."""
    failed = [o for o in outcomes if not o.success and _is_drift(o)]
    if not failed or not live_chunks.is_file():
        return
    before = set(pq.read_table(live_chunks, columns=["doc_id"]).column("doc_id").to_pylist())
    now = set(chunks["doc_id"]) if len(chunks) else set()
    rows = [{"doc_id": d, "change": "gone"} for d in sorted(before - now)[:limit]]
    rows += [{"doc_id": d, "change": "new"} for d in sorted(now - before)[:limit]]
    for outcome in failed:
        outcome.examples = rows


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def validate_version(
    config: IndexConfig,
    store: VersionStore,
    version: str,
    *,
    dimension: int,
    max_tokens: int | None,
    force_reason: str | None = None,
) -> GateReport:
    """Run the gate over ``version``; raises ValidationFailed unless it passes or is forced."""
    started = time.perf_counter()
    cfg = config.validation
    manifest = store.manifest(version)
    site = store.version_dir(version) / "validation"
    if not cfg.enabled:
        report = GateReport(version, True, [], data_docs="(validation disabled)")
    else:
        live_state = store.live()
        live = store.manifest(live_state.version) if live_state is not None and live_state.version != version else None
        chunks, documents = build_frames(store.chunks_path(version), manifest, cfg)
        documents["kept"] = (documents["chunks"] > 0).astype(int)
        if site.exists():
            shutil.rmtree(site)  # a retry rewrites the same report
        # Chunk counts drift legitimately when the chunking config changed; documents must not.
        same_config = live is not None and live.config_fingerprint == manifest.config_fingerprint
        chunk_exps = _chunk_expectations(
            cfg, dimension, max_tokens, config.embedding.normalize, live if same_config else None
        )
        ctx = _gate_context(site)
        outcomes = _run_suite(ctx, "chunks", chunks, chunk_exps)
        outcomes += _run_suite(ctx, "documents", documents, _document_expectations(cfg, live))
        if live is not None:
            _drift_examples(outcomes, store.chunks_path(live.version), chunks)
        success = all(o.success for o in outcomes)
        report = GateReport(version, success, outcomes, data_docs=str(site / "index.html"))
    if not report.success and force_reason:
        report.forced, report.reason = True, force_reason
    report.seconds = round(time.perf_counter() - started, 3)
    write_json_atomic(store.version_dir(version) / "validation.json", report.to_dict())
    store.update_manifest(
        version,
        validation={
            "success": report.success,
            "forced": report.forced,
            "reason": report.reason,
            "failed": report.to_dict()["failed"],
            "data_docs": report.data_docs,
        },
        timings_s={"validate": report.seconds},
    )
    log.info("%s", report.describe())
    if not report.success and not report.forced:
        raise ValidationFailed(report.describe())
    return report


def require_reason(force: bool, reason: str | None) -> str | None:
    """A forced publish past a failed gate needs a reason, recorded in the manifest."""
    if force and not (reason and reason.strip()):
        raise ConfigError("forcing a publish past the quality gate needs a reason")
    return reason.strip() if force and reason else None
