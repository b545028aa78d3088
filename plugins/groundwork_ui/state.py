"""What the groundwork UI shows, read through the core: index files, manifests, live.json, pin, audit log.

Everything here is plain JSON-able dicts, so the HTML pages and the JSON API show the same
facts. Nothing opens Qdrant (the api-server must never open the embedded Qdrant folder: one
process per folder); whether a version's collection still exists is therefore not shown, only
whether the version is live and whether it has a DVC snapshot to be restored from.

A manifest or index file that cannot be read is reported on its own row instead of failing
the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from groundwork.config import discover_index_files, load_index
from groundwork.errors import GroundworkError
from groundwork.lifecycle import read_audit, read_pin
from groundwork.settings import Settings
from groundwork.versions import Manifest, VersionStore

__all__ = [
    "data_docs_dir",
    "index_detail",
    "index_files",
    "index_summary",
    "list_indexes",
    "version_row",
    "versions_of",
]

_UNREADABLE = (GroundworkError, ValueError, OSError, KeyError, TypeError)
VALIDATION_DISABLED = "(validation disabled)"


def index_files(settings: Settings) -> dict[str, Path]:
    """Index name (the file's stem, as the DAGs name them) -> its YAML file."""
    return {path.stem: path for path in discover_index_files(settings.indexes_dir)}


def versions_of(settings: Settings, index: str) -> list[str]:
    """The index's version ids on disk (the only version ids a URL may name)."""
    return VersionStore(settings, index).versions()


def data_docs_dir(settings: Settings, index: str, version: str) -> Path:
    """Where a version's quality-gate report (GX Data Docs) lives."""
    return VersionStore(settings, index).version_dir(version) / "validation"


# -- one version ----------------------------------------------------------------------------------


def gate_of(manifest: Manifest, store: VersionStore) -> dict[str, Any]:
    """The quality gate's verdict: passed, forced (published past a failure), rejected, disabled or unchecked."""
    gate = manifest.validation or {}
    has_docs = (store.version_dir(manifest.version) / "validation" / "index.html").is_file()
    if not gate:
        verdict = "unchecked"
    elif gate.get("data_docs") == VALIDATION_DISABLED:
        verdict = "disabled"
    elif gate.get("success"):
        verdict = "passed"
    elif gate.get("forced"):
        verdict = "forced"
    else:
        verdict = "rejected"
    return {
        "verdict": verdict,
        "failed": list(gate.get("failed") or []),
        "reason": gate.get("reason"),
        "data_docs": has_docs,
    }


def evaluation_of(manifest: Manifest) -> dict[str, Any] | None:
    """The promotion gate's record (golden queries), or None when the index has no golden queries."""
    record = (manifest.model_extra or {}).get("evaluation")
    if not isinstance(record, dict):
        return None
    if record.get("passed"):
        verdict = "passed"
    elif record.get("forced"):
        verdict = "forced"
    else:
        verdict = "regressed"
    return {
        "verdict": verdict,
        "k": record.get("k"),
        "mode": record.get("mode"),
        "metrics": dict(record.get("metrics") or {}),
        "live_version": record.get("live_version"),
        "live_metrics": record.get("live_metrics"),
        "regressions": list(record.get("regressions") or []),
        "reason": record.get("reason"),
    }


def config_of(manifest: Manifest) -> dict[str, Any]:
    """The parts of the effective config that tell versions apart, and a one-line summary."""
    cfg = manifest.effective_config
    chunking = dict(cfg.get("chunking") or {})
    embedding = dict(cfg.get("embedding") or {})
    strategy = chunking.get("strategy")
    if strategy == "tokens":
        size = f"{chunking.get('max_tokens')} tokens, overlap {chunking.get('overlap_tokens', 0)}"
    else:
        size = f"{chunking.get('max_characters')} chars, overlap {chunking.get('overlap', 0)}"
    search_mode = cfg.get("search_mode", "dense")
    model = embedding.get("model")
    precision = embedding.get("precision")
    summary = f"{strategy} ({size}) · {model}{'' if precision in (None, 'fp32') else f' ({precision})'} · {search_mode}"
    return {
        "fingerprint": manifest.config_fingerprint,
        "chunking": chunking,
        "model": model,
        "model_id": manifest.model_id,
        "precision": precision,
        "search_mode": search_mode,
        "overrides": manifest.overrides,
        "golden_queries": bool((cfg.get("evaluation") or {}).get("golden")),
        "summary": summary,
    }


def rollback_of(manifest: Manifest, gate: dict[str, Any], live: str | None) -> dict[str, Any]:
    """Whether the rollback DAG would accept this version (the same rule as ``groundwork.lifecycle.rollback``)."""
    if manifest.version == live:
        return {"allowed": False, "why": "live now"}
    if gate["verdict"] == "rejected":
        return {"allowed": False, "why": "rejected by the quality gate: it was never live"}
    return {"allowed": True, "why": None}


def version_row(store: VersionStore, manifest: Manifest, live: str | None, pinned: str | None) -> dict[str, Any]:
    gate = gate_of(manifest, store)
    return {
        "version": manifest.version,
        "created_at": manifest.created_at,
        "trigger": manifest.trigger,
        "run_id": manifest.run_id,
        "parent": manifest.parent,
        "live": manifest.version == live,
        "pinned": manifest.version == pinned,
        "config": config_of(manifest),
        "documents": dict(manifest.counts.get("documents") or {}),
        "chunks": dict(manifest.counts.get("chunks") or {}),
        "gate": gate,
        "evaluation": evaluation_of(manifest),
        "snapshot": (manifest.snapshot or {}).get("tag"),
        "collection": manifest.collection,
        "window": manifest.window,
        "forced_delete": manifest.forced_delete,
        "rollback": rollback_of(manifest, gate, live),
    }


# -- one index ------------------------------------------------------------------------------------


def _rows(settings: Settings, index: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(version rows newest first, the index's live/pin state)."""
    store = VersionStore(settings, index)
    live_error: str | None = None
    try:
        live_state = store.live()
    except _UNREADABLE as exc:
        live_state, live_error = None, f"live.json unreadable: {exc}"
    try:
        pin = read_pin(settings, index)
    except _UNREADABLE as exc:
        pin = {"version": None, "reason": f"pin.json unreadable: {exc}"}
    live = live_state.version if live_state else None
    pinned = pin.get("version") if pin else None
    rows: list[dict[str, Any]] = []
    for version in store.versions():
        try:
            rows.append(version_row(store, store.manifest(version), live, pinned))
        except _UNREADABLE as exc:
            rows.append({"version": version, "created_at": "", "error": f"manifest unreadable: {exc}",
                         "live": version == live, "pinned": version == pinned})  # fmt: skip
    rows.sort(key=lambda r: (r.get("created_at") or "", r["version"]), reverse=True)
    status = {
        "live": live_state.model_dump() if live_state else None,
        "live_error": live_error,
        "pin": pin,
    }
    return rows, status


def _describe_file(path: Path) -> dict[str, Any]:
    try:
        cfg = load_index(path)
    except _UNREADABLE as exc:
        return {"description": "", "schedule": None, "error": str(exc)}
    return {"description": cfg.description, "schedule": cfg.schedule, "error": None}


def _latest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest version's verdicts: what the last run that built something came to."""
    for row in rows:
        if "error" not in row:
            return {
                "version": row["version"],
                "created_at": row["created_at"],
                "trigger": row["trigger"],
                "gate": row["gate"]["verdict"],
                "evaluation": row["evaluation"],
                "golden_queries": row["config"]["golden_queries"],
            }
    return None


def index_summary(settings: Settings, index: str, path: Path) -> dict[str, Any]:
    rows, status = _rows(settings, index)
    return _summary(index, path, rows, status)


def _summary(index: str, path: Path, rows: list[dict[str, Any]], status: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": index,
        "file": str(path),
        **_describe_file(path),
        **status,
        "pinned": bool(status["pin"]),
        "version_count": len(rows),
        "latest": _latest(rows),
    }


def index_detail(settings: Settings, index: str, path: Path) -> dict[str, Any]:
    """The index's summary, every version (newest first) and its audit log (newest first)."""
    rows, status = _rows(settings, index)
    try:
        audit = list(reversed(read_audit(settings, index)))
        audit_error = None
    except _UNREADABLE as exc:
        audit, audit_error = [], f"audit.jsonl unreadable: {exc}"
    return {**_summary(index, path, rows, status), "versions": rows, "audit": audit, "audit_error": audit_error}


def list_indexes(settings: Settings) -> list[dict[str, Any]]:
    return [index_summary(settings, name, path) for name, path in sorted(index_files(settings).items())]
