"""Assemble a candidate version from a run's batch outputs and the parent's carried-over chunks.

Reads the plan, collects every batch's chunk table and report, takes the
parent version's rows for the documents the plan carries over (vectors
included, nothing re-embedded), names the version (content-addressed, see
:mod:`groundwork.versions`), and writes its ``chunks.parquet`` and
``manifest.json``. A run that changed nothing returns the live version and
writes nothing. Assembly is deterministic for a given plan, so a retry writes
the same version.
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

from groundwork.chunk_table import ChunkTableWriter, iter_batches, table_dim
from groundwork.config import IndexConfig
from groundwork.errors import GroundworkError
from groundwork.planning import Plan, read_plan
from groundwork.processing import batch_output_paths
from groundwork.versions import Manifest, VersionStore, collection_name, make_version_id

__all__ = ["AssemblyResult", "assemble"]


class AssemblyResult:
    """The version a run produced, and whether it is new."""

    def __init__(self, version: str, created: bool, manifest: Manifest) -> None:
        self.version = version
        self.created = created
        self.manifest = manifest


def _carried(store: VersionStore, plan: Plan) -> Iterator[pa.RecordBatch]:
    if not plan.carry_over or plan.parent is None:
        return
    keep = pa.array(plan.carry_over, type=pa.string())
    for batch in iter_batches(store.chunks_path(plan.parent)):
        selected = batch.filter(pc.is_in(batch.column("doc_id"), value_set=keep))
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


def assemble(config: IndexConfig, store: VersionStore, plan_path: Path, dimension: int | None = None) -> AssemblyResult:
    """Write the candidate version of a run (or return the live one if nothing changed)."""
    started = time.perf_counter()
    plan = read_plan(plan_path)
    outputs = _outputs(plan)
    reports = [r for _, r in outputs]
    skipped = plan.skipped + [s for r in reports for s in r["skipped"]]
    changed = plan.counts["new"] + plan.counts["changed"] + plan.counts["deleted"]
    if plan.parent is not None and not changed and not plan.reprocess_all:
        return AssemblyResult(plan.parent, False, store.manifest(plan.parent))

    tables = [t for t, _ in outputs]
    dim = dimension or (table_dim(tables[0]) if tables else None)
    if dim is None and plan.parent is not None:
        dim = table_dim(store.chunks_path(plan.parent))
    if dim is None:
        raise GroundworkError(f"index {plan.index!r}: the run produced no chunks and has no parent version to keep")

    chunk_ids: list[str] = []
    for table in tables:
        chunk_ids += pq.read_table(table, columns=["chunk_id"]).column("chunk_id").to_pylist()
    carried_ids = [cid for b in _carried(store, plan) for cid in b.column("chunk_id").to_pylist()]
    if not chunk_ids and not carried_ids:
        raise GroundworkError(
            f"index {plan.index!r}: the candidate has no chunks ({len(skipped)} documents skipped); nothing to publish"
        )
    version = make_version_id(
        datetime.fromisoformat(plan.build_time), plan.fingerprint, plan.model_id, chunk_ids + carried_ids
    )

    with ChunkTableWriter(store.chunks_path(version), dim) as writer:
        for table in tables:
            for batch in iter_batches(table):
                writer.write_batch(
                    batch.set_column(
                        batch.schema.get_field_index("version"), "version", _const(version, batch.num_rows)
                    )
                )
        for batch in _carried(store, plan):
            writer.write_batch(
                batch.set_column(batch.schema.get_field_index("version"), "version", _const(version, batch.num_rows))
            )

    embedded = sum(r["embedded"] for r in reports)
    reused = sum(r["reused"] for r in reports)
    timings: dict[str, float] = dict(plan.timings_s)
    for report in reports:
        for stage, seconds in report["timings_s"].items():
            timings[stage] = round(timings.get(stage, 0.0) + seconds, 3)
    timings["assemble"] = round(time.perf_counter() - started, 3)
    manifest = Manifest(
        index=plan.index,
        version=version,
        parent=plan.parent,
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
                "skipped": len(skipped),
                "total": len({*plan.carry_over}) + sum(r["documents"] - r["documents_skipped"] for r in reports),
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
