"""SQL sources: a query through SQLAlchemy, a document per row or group.

The URL comes from the source's ``url``, the environment variable named by
``url_env``, or a connection id resolved by the caller (Airflow's glue resolves
Airflow Connections; without Airflow, ``AIRFLOW_CONN_<ID>`` is read from the
environment). Rows are streamed. Any failure to connect or to run the query is
a :class:`~groundwork.errors.SourceError` naming the source and the host, never
the password.

With a window, a source partitioned by a timestamp column reads only that
window: the query is wrapped as ``SELECT * FROM (<query>) AS gw_window WHERE
<column> >= :start AND <column> < :end``, the bounds as ISO-8601 text widened by
a day (so dates, local offsets and text columns compare safely), and the exact
window is applied to the rows that come back. A grouped source is read whole
(a group must not lose the rows outside the window), and so is any query the
database refuses to wrap; both keep only the window's documents.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, TextClause, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from groundwork.config import SqlSourceConfig
from groundwork.errors import SourceError
from groundwork.sources import Discovery
from groundwork.sources.rows import check_columns, rows_to_documents
from groundwork.sources.window import TimeWindow

log = logging.getLogger(__name__)
_MARGIN = timedelta(days=1)


def env_connection(conn_id: str) -> str | None:
    """Airflow's environment convention, readable without Airflow."""
    return os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")


def resolve_url(cfg: SqlSourceConfig, resolve_connection: Callable[[str], str | None] | None) -> str:
    if cfg.connection_id:
        url = (resolve_connection or env_connection)(cfg.connection_id)
        if url:
            return _sqlalchemy_scheme(url)
    if cfg.url_env:
        url = os.environ.get(cfg.url_env)
        if url:
            return _sqlalchemy_scheme(url)
    if cfg.url:
        return _sqlalchemy_scheme(cfg.url)
    raise SourceError(
        f"source {cfg.name!r}: no database URL: set connection {cfg.connection_id!r}, "
        f"environment variable {cfg.url_env!r}, or url"
    )


def _sqlalchemy_scheme(url: str) -> str:
    """Airflow connection URIs say ``postgres://``; SQLAlchemy wants ``postgresql+psycopg://``."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def windowed_query(cfg: SqlSourceConfig, engine: Engine, window: TimeWindow) -> tuple[TextClause, dict[str, Any]]:
    """The source's query limited to ``window`` (widened by a day each side) on its partition column."""
    assert cfg.partition_column is not None
    inner = cfg.query.strip().rstrip(";").rstrip()
    column = engine.dialect.identifier_preparer.quote(cfg.partition_column)
    sql = f"SELECT * FROM ({inner}) AS gw_window WHERE gw_window.{column} >= :gw_start AND gw_window.{column} < :gw_end"
    bounds = {"gw_start": (window.start - _MARGIN).isoformat(), "gw_end": (window.end + _MARGIN).isoformat()}
    return text(sql), bounds


def discover_sql(
    cfg: SqlSourceConfig,
    *,
    resolve_connection: Callable[[str], str | None] | None = None,
    window: TimeWindow | None = None,
) -> Discovery:
    url = resolve_url(cfg, resolve_connection)
    try:
        safe = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise SourceError(f"source {cfg.name!r}: invalid database URL: {exc}") from None
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise SourceError(f"source {cfg.name!r}: cannot use database URL {safe}: {exc}") from None
    try:
        if window is not None and cfg.partition_column and not cfg.group_by:
            query, bounds = windowed_query(cfg, engine, window)
            try:
                return _read(cfg, engine, query, bounds, safe, window)
            except SQLAlchemyError as exc:
                log.warning("source %r: the window could not be pushed into the query (%s); reading it whole",
                            cfg.name, str(getattr(exc, "orig", None) or exc).splitlines()[0])  # fmt: skip
        return _read(cfg, engine, text(cfg.query), {}, safe, window)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        reason = str(orig) if orig is not None else str(exc).splitlines()[0]
        raise SourceError(f"source {cfg.name!r}: query failed against {safe}: {reason.strip()}") from None
    finally:
        engine.dispose()


def _read(
    cfg: SqlSourceConfig,
    engine: Engine,
    query: TextClause,
    bounds: dict[str, Any],
    safe: str,
    window: TimeWindow | None,
) -> Discovery:
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(query, bounds)
        columns = list(result.keys())
        check_columns(cfg, columns, safe)
        rows = (dict(zip(columns, row, strict=True)) for row in result)
        return rows_to_documents(cfg, rows, uri_base=f"sql://{cfg.name}", window=window)
