"""Qdrant: where a version's points go, and how the alias moves.

The target is one of: a local folder (qdrant-client local mode, the embedded
default), ``:memory:`` (tests; one client per process), or a server URL with an
API key. The same publishing code runs against all three.

Local mode allows one process per folder, so :func:`open_client` holds a file
lock for as long as a client on that folder is open: tasks that touch the
embedded store never overlap, whichever executor runs them.

Publishing writes collection ``<index>__<version>`` with deterministic point ids
(the chunk ids), in batches with ``wait=True``, checks the count, and only then
moves alias ``<index>`` with one ``update_collection_aliases`` call (delete +
create, applied atomically). This module does not decide what to publish.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qdrant_client import QdrantClient, models

from groundwork.chunk_table import iter_batches, payload_of
from groundwork.config import QdrantConfig
from groundwork.errors import PublishError
from groundwork.settings import Settings

__all__ = [
    "QdrantTarget",
    "ServerConnection",
    "alias_target",
    "drop_collection",
    "move_alias",
    "open_client",
    "resolve_target",
    "upload_table",
]

_DISTANCE = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
_memory_clients: dict[str, QdrantClient] = {}


@dataclass(frozen=True)
class ServerConnection:
    """A server endpoint from outside the index file (an Airflow Connection)."""

    url: str
    api_key: str | None = None
    prefer_grpc: bool | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class QdrantTarget:
    kind: Literal["local", "memory", "server"]
    path: Path | None = None
    url: str | None = None
    api_key: str | None = None
    prefer_grpc: bool = False
    timeout_s: int = 60
    lock_path: Path | None = None

    def describe(self) -> str:
        return str(self.path) if self.kind == "local" else (self.url or ":memory:")


def resolve_target(cfg: QdrantConfig, settings: Settings, connection: ServerConnection | None = None) -> QdrantTarget:
    """The target an index publishes to; an Airflow Connection, when given, wins."""
    if connection is not None:
        return QdrantTarget(
            kind="server",
            url=connection.url,
            api_key=connection.api_key,
            prefer_grpc=cfg.prefer_grpc if connection.prefer_grpc is None else connection.prefer_grpc,
            timeout_s=connection.timeout_s or cfg.timeout_s,
        )
    if cfg.url:
        api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        return QdrantTarget(
            kind="server", url=cfg.url, api_key=api_key, prefer_grpc=cfg.prefer_grpc, timeout_s=cfg.timeout_s
        )
    if cfg.location == ":memory:":
        return QdrantTarget(kind="memory")
    path = cfg.path or settings.qdrant_path
    return QdrantTarget(kind="local", path=path, lock_path=path.with_name(path.name + ".lock"))


@contextmanager
def open_client(target: QdrantTarget, lock_timeout_s: float = 900) -> Iterator[QdrantClient]:
    """A client for ``target``, closed (and its folder lock released) on exit."""
    if target.kind == "memory":
        # One in-memory store per process, shared by every stage of that process.
        yield _memory_clients.setdefault("memory", QdrantClient(location=":memory:"))
        return
    if target.kind == "server":
        client = QdrantClient(
            url=target.url, api_key=target.api_key, prefer_grpc=target.prefer_grpc, timeout=target.timeout_s
        )
        try:
            yield client
        finally:
            client.close()
        return
    from filelock import FileLock, Timeout

    assert target.path is not None and target.lock_path is not None
    target.path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.lock_path))
    try:
        lock.acquire(timeout=lock_timeout_s)
    except Timeout:
        raise PublishError(
            f"embedded Qdrant at {target.path} stayed busy for {lock_timeout_s:.0f}s "
            f"(another task holds {target.lock_path})"
        ) from None
    try:
        client = QdrantClient(path=str(target.path))
        try:
            yield client
        finally:
            client.close()
    finally:
        lock.release()


def reset_memory_clients() -> None:
    """Forget in-memory stores (tests)."""
    for client in _memory_clients.values():
        client.close()
    _memory_clients.clear()


def alias_target(client: QdrantClient, alias: str) -> str | None:
    """The collection ``alias`` points at, or None."""
    for item in client.get_aliases().aliases:
        if item.alias_name == alias:
            return str(item.collection_name)
    return None


def move_alias(client: QdrantClient, alias: str, collection: str) -> str | None:
    """Point ``alias`` at ``collection`` in one atomic call; returns the previous target."""
    previous = alias_target(client, alias)
    if previous == collection:
        return previous
    ops: list[Any] = []
    if previous is not None:
        ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    ops.append(
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
    )
    client.update_collection_aliases(change_aliases_operations=ops)
    return previous


def drop_collection(client: QdrantClient, collection: str) -> bool:
    if client.collection_exists(collection):
        client.delete_collection(collection)
        return True
    return False


def upload_table(
    client: QdrantClient,
    collection: str,
    table: Path,
    dim: int,
    distance: str = "cosine",
    batch_size: int = 256,
) -> int:
    """Create ``collection`` (if needed) and upsert every chunk of ``table``; returns the verified count."""
    if client.collection_exists(collection):
        params = client.get_collection(collection).config.params.vectors
        size = getattr(params, "size", None)
        if size != dim:
            raise PublishError(f"collection {collection} exists with vector size {size}, expected {dim}")
    else:
        client.create_collection(collection, vectors_config=models.VectorParams(size=dim, distance=_DISTANCE[distance]))
    expected = 0
    for batch in iter_batches(table, batch_size=batch_size):
        rows = batch.to_pylist()
        points = [models.PointStruct(id=r["chunk_id"], vector=r["embedding"], payload=payload_of(r)) for r in rows]
        client.upsert(collection, points=points, wait=True)
        expected += len(points)
    got = client.count(collection, exact=True).count
    if got != expected:
        raise PublishError(f"collection {collection} holds {got} points after upload, expected {expected}")
    return got
