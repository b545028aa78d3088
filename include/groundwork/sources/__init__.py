"""Sources: list the documents of an index with stable ids and content hashes.

Each source kind has one module: ``files`` (folders of documents for
unstructured), ``tables`` (CSV/Parquet through pyarrow), ``sql`` (queries
through SQLAlchemy); ``rows`` turns table rows into documents for both of the
latter. :func:`discover` dispatches on the source config.

Discovery reads what it must to hash a document, nothing more: files are
hashed, not parsed. A source that cannot be reached raises
:class:`~groundwork.errors.SourceError` (the run stops before publishing); a
single unreadable entry is returned as a :class:`Skipped` record instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from groundwork.config import FileSourceConfig, SqlSourceConfig, TableSourceConfig
from groundwork.documents import SourceDocument
from groundwork.sources.skipped import Skipped

__all__ = ["ConnectionResolver", "Discovery", "Skipped", "discover"]

# Maps a connection id to a SQLAlchemy URL (or None). Airflow's glue passes one
# backed by Airflow Connections; the core's default reads AIRFLOW_CONN_<ID>.
ConnectionResolver = Callable[[str], str | None]


@dataclass
class Discovery:
    """What one source listed: its documents and the entries it had to skip."""

    source: str
    documents: list[SourceDocument] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def discover(
    source: FileSourceConfig | TableSourceConfig | SqlSourceConfig,
    *,
    resolve_connection: ConnectionResolver | None = None,
) -> Discovery:
    """List one source's documents; raises SourceError if it cannot be read at all."""
    if isinstance(source, FileSourceConfig):
        from groundwork.sources.files import discover_files

        return discover_files(source)
    if isinstance(source, TableSourceConfig):
        from groundwork.sources.tables import discover_table

        return discover_table(source)
    from groundwork.sources.sql import discover_sql

    return discover_sql(source, resolve_connection=resolve_connection)
