"""Assemble a candidate version from a run's batch outputs and the parent's carried-over chunks.

Reads the plan, collects every batch's chunk table and report, takes the base
version's rows for every document the run did not touch (vectors included,
nothing re-embedded), names the version (content-addressed, see
:mod:`groundwork.versions`), and writes its ``chunks.parquet``,
``manifest.json`` and ``quarantine.parquet``. A run whose result has the same
content as its base returns the base and writes nothing. Assembly is
deterministic for a given plan and base, so a retry writes the same version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from groundwork.chunk_table import ChunkTableWriter, iter_batches
from groundwork.config import IndexConfig
from groundwork.errors import GroundworkError, RebaseConflict
from groundwork.planning import Plan, read_plan
from groundwork.processing import batch_output_paths
from groundwork.sources.skipped import OUT_OF_SCOPE
from groundwork.versions import Manifest, VersionStore, collection_name, make_version_id

__all__ = ["AssemblyResult", "assemble"]


class AssemblyResult:
    """The version a run produced, whether it is new, and what this run skipped.

    ``skipped`` matters most when no version is created: a run whose only change is a file that
    cannot be parsed produces the live version's content again, so its quarantine would otherwise
    be recorded nowhere but in the logs.
    """

    def __init__(
        self, version: str, created: bool, manifest: Manifest, skipped: list[dict[str, Any]] | None = None
    ) -> None:
        self.version = version
        self.created = created
        self.manifest = manifest
        self.skipped = skipped if skipped is not None else list(manifest.skipped)


def _in_scope(skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in skipped if s["error_type"] not in OUT_OF_SCOPE]


def _carried(store: VersionStore, base: str | None, touched: set[str]) -> Iterator[pa.RecordBatch]:
    """Rows of ``base`` for every document this run did not touch (vectors included)."""
    if base is None:
        return
    drop = pa.array(sorted(touched), type=pa.string())
    for batch in iter_batches(store.chunks_path(base)):
        selected = batch.filter(pc.invert(pc.is_in(batch.column("doc_id"), value_set=drop)))
        if selected.num_rows:
            yield selected


def _outputs(plan: Plan) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for batch in plan.batches:
        table, report = batch_output_paths(Path(batch))
        if not table.is_file() or not report.is_file():
            raise GroundworkError(f"batch {batch} has no output: its processing task did not finish")
        found.append((table, json.loads(report.read_text())))
    return found


def _restamp(batch: pa.RecordBatch, version: str) -> pa.RecordBatch:
    return batch.set_column(batch.schema.get_field_index("version"), "version", _const(version, batch.num_rows))


def assemble(config: IndexConfig, store: VersionStore, plan_path: Path, base: str | None = None) -> AssemblyResult:
    """Write the candidate version of a run (or return the base version when its content would not change).

    ``base`` is the version the run's changes are applied to: by default the
    version the run planned against. When another run published in between,
    the commit step passes the new live version instead (a rebase): every
    document this run did not touch comes from there, so no update is lost.
    """
    started = time.perf_counter()
    plan = read_plan(plan_path)
    if plan.dry_run:
        raise GroundworkError(f"run {plan.run_id} is a dry run: its plan lists changes and is never assembled")
    base = plan.parent if base is None else base
    if base is not None and base != plan.parent:
        base_manifest = store.manifest(base)
        if (base_manifest.config_fingerprint, base_manifest.model_id) != (plan.fingerprint, plan.model_id):
            raise RebaseConflict(
                f"index {plan.index!r}: version {base} went live with another config or model while run "
                f"{plan.run_id} was in flight; its changes cannot be combined. Re-run the refresh."
            )
    outputs = _outputs(plan)
    reports = [r for _, r in outputs]
    skipped = plan.skipped + [s for r in reports for s in r["skipped"]]
    changed = plan.counts["new"] + plan.counts["changed"] + plan.counts["deleted"]
    if base is not None and base == plan.parent and not changed and not plan.reprocess_all:
        return AssemblyResult(base, False, store.manifest(base), _in_scope(skipped))

    tables = [t for t, _ in outputs]
    dim = plan.model_dimension
    touched = set(plan.processed) | set(plan.deleted)
    chunk_ids: list[str] = []
    for table in tables:
        chunk_ids += pq.read_table(table, columns=["chunk_id"]).column("chunk_id").to_pylist()
    carried_ids: list[str] = []
    carried_docs: set[str] = set()
    for batch in _carried(store, base, touched):
        carried_ids += batch.column("chunk_id").to_pylist()
        carried_docs.update(batch.column("doc_id").to_pylist())
    if not chunk_ids and not carried_ids:
        raise GroundworkError(
            f"index {plan.index!r}: the candidate has no chunks ({len(skipped)} documents skipped); nothing to publish"
        )
    version = make_version_id(
        datetime.fromisoformat(plan.build_time), plan.fingerprint, plan.model_id, chunk_ids + carried_ids
    )
    if base is not None and version.split("-")[1] == base.split("-")[1]:
        # Same chunks, same config, same model: the base version already is this content.
        return AssemblyResult(base, False, store.manifest(base), _in_scope(skipped))

    with ChunkTableWriter(store.chunks_path(version), dim) as writer:
        for table in tables:
            for batch in iter_batches(table):
                writer.write_batch(_restamp(batch, version))
        for batch in _carried(store, base, touched):
            writer.write_batch(_restamp(batch, version))

    embedded = sum(r["embedded"] for r in reports)
    reused = sum(r["reused"] for r in reports)
    timings: dict[str, float] = dict(plan.timings_s)
    for report in reports:
        for stage, seconds in report["timings_s"].items():
            timings[stage] = round(timings.get(stage, 0.0) + seconds, 3)
    timings["assemble"] = round(time.perf_counter() - started, 3)
    documents_kept = len(carried_docs) + sum(r["documents"] - r["documents_skipped"] for r in reports)
    manifest = Manifest(
        index=plan.index,
        version=version,
        parent=base,
        created_at=plan.build_time,
        run_id=plan.run_id,
        trigger=plan.trigger,
        config_fingerprint=plan.fingerprint,
        effective_config=config.model_dump(mode="json"),
        model_id=plan.model_id,
        dimension=dim,
        collection=collection_name(plan.index, version),
        counts={
            "documents": {
                **{k: plan.counts[k] for k in ("new", "changed", "unchanged", "deleted")},
                "quarantined": len(skipped),
                "total": documents_kept,
            },
            "chunks": {
                "total": len(chunk_ids) + len(carried_ids),
                "processed": len(chunk_ids),
                "carried": len(carried_ids),
                "embedded": embedded,
                "reused": reused,
            },
        },
        timings_s=timings,
        skipped=skipped,
        source_digests=plan.source_digests,
        rebased_from=plan.parent if base != plan.parent else None,
        forced_delete=plan.forced_delete,
        window=plan.window,
        overrides=plan.overrides,
    )
    write_quarantine(store.version_dir(version) / "quarantine.parquet", skipped, plan.run_id)
    store.write_manifest(manifest)
    return AssemblyResult(version, True, manifest)


QUARANTINE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("uri", pa.string()),
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("stage", pa.string()),
        ("run_id", pa.string()),
    ]
)


def write_quarantine(path: Path, skipped: list[dict[str, Any]], run_id: str) -> None:
    """The documents this run could not use, kept with the version (the next run tries them again)."""
    rows = [{**{k: s.get(k) for k in QUARANTINE_SCHEMA.names}, "run_id": run_id} for s in skipped]
    pq.write_table(pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA), path)


def _const(value: str, n: int) -> pa.Array:
    return pa.array([value] * n, type=pa.string())
