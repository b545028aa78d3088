"""Table sources: CSV and Parquet files read with pyarrow, a document per row or group.

Parquet is read in record batches of the needed columns only. A CSV row with
the wrong number of fields is skipped with its line recorded rather than
failing the file. A missing file is a :class:`~groundwork.errors.SourceError`.
A file has no index to seek by time: with a window, the whole file is read and
only the window's documents are kept (see :mod:`groundwork.sources.rows`).
"""

from __future__ import annotations

from collections.abc import Iterator
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
    ragged: list[Skipped] = []
    try:
        rows = _parquet_rows(cfg) if cfg.table_format == "parquet" else _csv_rows(cfg, ragged)
        found = rows_to_documents(cfg, rows, uri_base=str(path), window=window)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"source {cfg.name!r}: cannot read {path}: {exc}") from exc
    found.skipped[:0] = ragged
    return found


def _parquet_rows(cfg: TableSourceConfig) -> Iterator[dict[str, Any]]:
    file = pq.ParquetFile(cfg.path)
    check_columns(cfg, file.schema_arrow.names, str(cfg.path))
    for batch in file.iter_batches(batch_size=_BATCH_ROWS, columns=required_columns(cfg)):
        yield from batch.to_pylist()


def _csv_rows(cfg: TableSourceConfig, ragged: list[Skipped]) -> Iterator[dict[str, Any]]:
    def on_invalid(row: Any) -> str:
        ragged.append(
            Skipped(
                cfg.name,
                f"{cfg.path}#line{row.number}" if row.number is not None else str(cfg.path),
                "RaggedRow",
                f"expected {row.expected_columns} fields, found {row.actual_columns}: {row.text[:120]!r}",
            )
        )
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
