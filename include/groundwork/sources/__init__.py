"""Sources: list the documents of an index with stable ids and content hashes.

Each source kind has one module: ``files`` (folders of documents for
unstructured), ``tables`` (CSV/Parquet through pyarrow), ``sql`` (queries
through SQLAlchemy); ``rows`` turns table rows into documents for both of the
latter. :func:`discover` dispatches on the source config.

Discovery reads what it must to hash a document, nothing more: files are
hashed, not parsed. A source that cannot be reached raises
:class:`~groundwork.errors.SourceError` (the run stops before publishing); a
single unreadable entry is returned as a :class:`Skipped` record instead.

A time-partitioned source (``time_partition`` in its config) given a
:class:`~groundwork.sources.window.TimeWindow` lists only the documents of that
window: files by modification time or a date in their path, rows by a
timestamp column. Its :class:`Discovery` then says so (``windowed``) and, where
the source can tell cheaply, which documents exist outside the window
(``existing``: a folder listing names every file without reading any), so that
planning never mistakes "not in this window" for "deleted". Without a window,
or without ``time_partition``, a source is read whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from groundwork.config import FileSourceConfig, SqlSourceConfig, TableSourceConfig
from groundwork.documents import SourceDocument
from groundwork.sources.skipped import Skipped
from groundwork.sources.window import TimeWindow

__all__ = ["ConnectionResolver", "Discovery", "Skipped", "TimeWindow", "discover"]

# Maps a connection id to a SQLAlchemy URL (or None). Airflow's glue passes one
# backed by Airflow Connections; the core's default reads AIRFLOW_CONN_<ID>.
ConnectionResolver = Callable[[str], str | None]


@dataclass
class Discovery:
    """What one source listed: its documents and the entries it had to skip.

    ``windowed``: only the documents of a time window were listed. ``existing``: for a windowed
    listing, the ids of every document the source has, in the window or not (None: unknown, so a
    document missing from the window may still exist).
    """

    source: str
    documents: list[SourceDocument] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    windowed: bool = False
    existing: set[str] | None = None


def discover(
    source: FileSourceConfig | TableSourceConfig | SqlSourceConfig,
    *,
    window: TimeWindow | None = None,
    resolve_connection: ConnectionResolver | None = None,
) -> Discovery:
    """List one source's documents (only ``window``'s, if it is time-partitioned); SourceError if unreadable."""
    if isinstance(source, FileSourceConfig):
        from groundwork.sources.files import discover_files

        return discover_files(source, window=window)
    if isinstance(source, TableSourceConfig):
        from groundwork.sources.tables import discover_table

        return discover_table(source, window=window)
    from groundwork.sources.sql import discover_sql

    return discover_sql(source, resolve_connection=resolve_connection, window=window)
