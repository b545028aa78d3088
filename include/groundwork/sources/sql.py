"""SQL sources: a query through SQLAlchemy, a document per row or group.

The URL comes from the source's ``url``, the environment variable named by
``url_env``, or a connection id resolved by the caller (Airflow's glue resolves
Airflow Connections; without Airflow, ``AIRFLOW_CONN_<ID>`` is read from the
environment). Rows are streamed. Any failure to connect or to run the query is
a :class:`~groundwork.errors.SourceError` naming the source and the host, never
the password.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from groundwork.config import SqlSourceConfig
from groundwork.errors import SourceError
from groundwork.sources import Discovery
from groundwork.sources.rows import check_columns, rows_to_documents


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


def discover_sql(
    cfg: SqlSourceConfig, *, resolve_connection: Callable[[str], str | None] | None = None
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
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(text(cfg.query))
            columns = list(result.keys())
            check_columns(cfg, columns, safe)
            rows = (dict(zip(columns, row, strict=True)) for row in result)
            return rows_to_documents(cfg, rows, uri_base=f"sql://{cfg.name}")
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        reason = str(orig) if orig is not None else str(exc).splitlines()[0]
        raise SourceError(f"source {cfg.name!r}: query failed against {safe}: {reason.strip()}") from None
    finally:
        engine.dispose()
