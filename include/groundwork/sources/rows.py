"""Turn table rows into documents: shared by table files and SQL queries.

A document per row, or per distinct ``group_by`` value (its rows rendered one
per line, in input order). Text and title come from ``str.format`` templates
over named columns; declared metadata columns become chunk metadata; the key
columns make the id. A row whose key is missing, or that repeats a key, is
skipped with its reason rather than silently merged.

With a time window, a document of a source partitioned by a timestamp column is
kept only if its time (the latest of its rows' timestamps) falls in the window:
a group is read whole or not at all, never as a part of its rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from groundwork.documents import SourceDocument
from groundwork.errors import SourceError
from groundwork.source_config import SqlSourceConfig, TableSourceConfig, template_fields
from groundwork.sources import Discovery
from groundwork.sources.skipped import Skipped
from groundwork.sources.window import TimeWindow, as_utc

Tabular = TableSourceConfig | SqlSourceConfig


def required_columns(cfg: Tabular) -> list[str]:
    cols = [*cfg.key, *template_fields(cfg.text), *cfg.metadata_columns]
    if cfg.title:
        cols += template_fields(cfg.title)
    if cfg.timestamp_column:
        cols.append(cfg.timestamp_column)
    if cfg.partition_column:
        cols.append(cfg.partition_column)
    if cfg.group_by:
        cols += cfg.group_by
    return list(dict.fromkeys(cols))


def check_columns(cfg: Tabular, available: Iterable[str], where: str) -> None:
    have = set(available)
    missing = [c for c in required_columns(cfg) if c not in have]
    if missing:
        raise SourceError(
            f"source {cfg.name!r} ({where}): column(s) {', '.join(missing)} not found; "
            f"available: {', '.join(sorted(have)) or '(none)'}"
        )


def _plain(value: Any) -> Any:
    """A JSON-friendly version of a cell value."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _render(template: str, row: Mapping[str, Any]) -> str:
    return template.format_map({k: "" if v is None else v for k, v in row.items()})


def partition_time(cfg: Tabular, rows: Iterable[Mapping[str, Any]]) -> datetime | None:
    """The latest partition timestamp of a document's rows (UTC), or None when none has one."""
    column = cfg.partition_column
    stamps = [s for s in (as_utc(r.get(column)) for r in rows) if s is not None] if column else []
    return max(stamps) if stamps else None


def rows_to_documents(
    cfg: Tabular, rows: Iterable[Mapping[str, Any]], uri_base: str, window: TimeWindow | None = None
) -> Discovery:
    """Documents from rows that already passed :func:`check_columns` (only ``window``'s, when partitioned)."""
    windowed = window is not None and cfg.partition_column is not None
    found = Discovery(source=cfg.name, windowed=windowed)
    groups: dict[str, list[dict[str, Any]]] = {}
    for number, raw in enumerate(rows, start=1):
        row = {k: _plain(v) for k, v in raw.items()}
        key_cols = cfg.group_by or cfg.key
        key_values = [row.get(c) for c in key_cols]
        if any(v is None or v == "" for v in key_values):
            found.skipped.append(
                Skipped(cfg.name, f"{uri_base}#row{number}", "MissingKey", f"row {number} has no value in {key_cols}")
            )
            continue
        key = _key(key_values)
        if key in groups and not cfg.group_by:
            message = f"row {number} repeats key {key!r}; kept the first"
            found.skipped.append(Skipped(cfg.name, f"{uri_base}#{key}", "DuplicateKey", message))
            continue
        groups.setdefault(key, []).append(row)
    for key, members in groups.items():
        if windowed and window is not None:
            stamp = partition_time(cfg, members)
            if stamp is None or not window.contains(stamp):
                continue
        try:
            found.documents.append(_document(cfg, key, members, uri_base))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            message = f"the text or title template cannot render this row: {type(exc).__name__}: {exc}"
            found.skipped.append(Skipped(cfg.name, f"{uri_base}#{key}", "TemplateError", message))
    return found


def _key(values: list[Any]) -> str:
    """A document key from key column values: integral numbers without ".0"; parts escaped when several."""
    parts = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values]
    if len(parts) == 1:
        return parts[0]
    return "/".join(quote(p, safe=" :@") for p in parts)


def _document(cfg: Tabular, key: str, rows: list[dict[str, Any]], uri_base: str) -> SourceDocument:
    first = rows[0]
    text = "\n".join(_render(cfg.text, r) for r in rows)
    title = _render(cfg.title, first) if cfg.title else key
    metadata = {c: first.get(c) for c in cfg.metadata_columns}
    modified = None
    if cfg.timestamp_column:
        stamps = [str(r[cfg.timestamp_column]) for r in rows if r.get(cfg.timestamp_column) is not None]
        modified = max(stamps) if stamps else None
    # The declared language goes into every chunk's payload, so changing it must re-process the row.
    blob = json.dumps(
        {"text": text, "title": title, "metadata": metadata, "language": cfg.language}, sort_keys=True, default=str
    )
    return SourceDocument(
        doc_id=f"{cfg.name}:{key}",
        source=cfg.name,
        uri=f"{uri_base}#{key}",
        title=title,
        content_hash=hashlib.sha256(blob.encode()).hexdigest(),
        kind="row",
        modified_at=modified,
        text=text,
        language=cfg.language,
        metadata=metadata,
    )
