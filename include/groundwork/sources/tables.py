"""Table sources: CSV and Parquet files read with pyarrow, a document per row or group.

Parquet is read in record batches of the needed columns only. A CSV row with
the wrong number of fields is skipped with its line number recorded rather than
failing the file (pyarrow cannot number lines when quoted values may hold
newlines, so the rows are found in the file afterwards: a second read, only for
a file that had ragged rows). A missing file is a :class:`~groundwork.errors.SourceError`.
A file has no index to seek by time: with a window, the whole file is read and
only the window's documents are kept (see :mod:`groundwork.sources.rows`).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from groundwork.config import TableSourceConfig
from groundwork.errors import SourceError
from groundwork.sources import Discovery
from groundwork.sources.rows import check_columns, required_columns, rows_to_documents
from groundwork.sources.skipped import Skipped
from groundwork.sources.window import TimeWindow

_BATCH_ROWS = 10_000


def discover_table(cfg: TableSourceConfig, window: TimeWindow | None = None) -> Discovery:
    path = cfg.path
    if not path.is_file():
        raise SourceError(f"source {cfg.name!r}: table file {path} does not exist")
    ragged: list[_RaggedRow] = []
    try:
        rows = _parquet_rows(cfg) if cfg.table_format == "parquet" else _csv_rows(cfg, ragged)
        found = rows_to_documents(cfg, rows, uri_base=str(path), window=window)
        found.skipped[:0] = _ragged_entries(cfg, ragged)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"source {cfg.name!r}: cannot read {path}: {exc}") from exc
    return found


@dataclass(frozen=True)
class _RaggedRow:
    text: str
    expected: int
    actual: int
    number: int | None


def _ragged_entries(cfg: TableSourceConfig, ragged: list[_RaggedRow]) -> list[Skipped]:
    """A skipped entry per ragged row, ``<path>#line<n>`` with n its first line in the file (1-based)."""
    lines = _line_numbers(cfg.path, [r.text for r in ragged]) if any(r.number is None for r in ragged) else {}
    numbered = [(row.number if row.number is not None else lines.get(i), row) for i, row in enumerate(ragged)]
    numbered.sort(key=lambda item: item[0] or 0)  # handlers run per parsed block, not always in file order
    return [
        Skipped(
            cfg.name,
            f"{cfg.path}#line{number}" if number is not None else str(cfg.path),
            "RaggedRow",
            f"expected {row.expected} fields, found {row.actual}: {row.text[:120]!r}",
        )
        for number, row in numbered
    ]


def _line_numbers(path: Path, texts: list[str]) -> dict[int, int]:
    """For each row text (by position in ``texts``), the line where it starts; rows equal in text take
    successive occurrences. The file is scanned once, memory-mapped."""
    found: dict[int, int] = {}
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        starts: list[tuple[int, int]] = []  # (byte offset, index in texts)
        used: set[int] = set()
        for i, text in enumerate(texts):
            needle = text.encode("utf-8")
            at = data.find(needle)
            while at != -1 and (at in used or (at > 0 and data[at - 1 : at] not in (b"\n", b"\r"))):
                at = data.find(needle, at + 1)
            if at != -1:
                used.add(at)
                starts.append((at, i))
        line, pos = 1, 0
        for at, i in sorted(starts):
            line += data[pos:at].count(b"\n")
            pos = at
            found[i] = line
    return found


def _parquet_rows(cfg: TableSourceConfig) -> Iterator[dict[str, Any]]:
    file = pq.ParquetFile(cfg.path)
    check_columns(cfg, file.schema_arrow.names, str(cfg.path))
    for batch in file.iter_batches(batch_size=_BATCH_ROWS, columns=required_columns(cfg)):
        yield from batch.to_pylist()


def _csv_rows(cfg: TableSourceConfig, ragged: list[_RaggedRow]) -> Iterator[dict[str, Any]]:
    def on_invalid(row: Any) -> str:
        ragged.append(_RaggedRow(str(row.text), int(row.expected_columns), int(row.actual_columns), row.number))
        return "skip"

    # Keys and templates are text: read every column as a string, so "007"
    # stays "007" and ids never change with type inference.
    # Quoted values may span lines; without newlines_in_values a file larger
    # than one read block fails with "CSV parser got out of sync with chunker".
    peek_parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=lambda _: "skip")
    with pacsv.open_csv(cfg.path, parse_options=peek_parse) as peek:
        names = peek.schema.names
    check_columns(cfg, names, str(cfg.path))
    parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid)
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=True, include_columns=required_columns(cfg)
    )
    with pacsv.open_csv(cfg.path, parse_options=parse, convert_options=convert) as reader:
        for batch in reader:
            yield from batch.to_pylist()
