"""The Qdrant server path: what groundwork sends to a server, its retries, and the Airflow Connection.

No Qdrant server can run on these machines. Two stand-ins check what is sent instead:

- a recording fake client (``create_autospec(QdrantClient)``) for the calls and their arguments;
- :class:`FakeQdrantServer`, a small HTTP server speaking the part of Qdrant's REST API groundwork
  uses, with state (collections, points, aliases) and injectable failures. The real
  ``QdrantClient`` (REST) talks to it, so the requests checked here are the ones the real client
  puts on the wire, retries included.

What a real server does with those requests (sharding, replication, HNSW builds, optimizer states)
is not verified here: see the README's "What is verified only in local mode".
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import create_autospec
from urllib.parse import parse_qs, urlparse

import grpc
import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from groundwork.config import IndexConfig, QdrantConfig, parse_index
from groundwork.errors import ConfigError, PublishError
from groundwork.lifecycle import prune
from groundwork.pipeline import run_index
from groundwork.publishing import publish_version
from groundwork.settings import Settings
from groundwork.vectorstore import (
    CollectionLayout,
    QdrantTarget,
    RetryingQdrantClient,
    RetryPolicy,
    ServerConnection,
    is_transient,
    open_client,
    resolve_target,
    server_client,
    upload_table,
)
from groundwork.versions import VersionStore
from tests.conftest import FakeEmbedder, make_index

# -- a fake Qdrant server (REST) ----------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class FakeQdrantServer:
    """Enough of Qdrant's REST API for publish/prune/alias moves; records every request."""

    requests: list[Request] = field(default_factory=list)
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    # (METHOD, path regex) -> status codes to answer, one per matching request, before behaving
    failures: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # (METHOD, path regex) -> status codes to answer AFTER applying the request (a lost answer)
    lost_answers: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    yellow_polls: int = 0  # GET /collections/{name} answers "yellow" this many times first
    url: str = ""

    def calls(self, *, skip_probe: bool = True) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests if not (skip_probe and r.path == "/")]

    def bodies(self, method: str, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.method == method and r.path == path]

    def _inject(self, table: dict[tuple[str, str], list[int]], method: str, path: str) -> int | None:
        for (m, pattern), codes in table.items():
            if m == method and re.fullmatch(pattern, path) and codes:
                return codes.pop(0)
        return None

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        code = self._inject(self.failures, method, path)
        if code is not None:
            return code, {"status": {"error": f"injected {code}"}}
        status, result = self._apply(method, path, body)
        lost = self._inject(self.lost_answers, method, path)
        if lost is not None:
            return lost, {"status": {"error": f"injected {lost} after applying"}}
        return status, result

    def _apply(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/":
            return 200, {"title": "qdrant - vector search engine", "version": "1.20.0"}
        if method == "GET" and path == "/aliases":
            items = [{"alias_name": a, "collection_name": c} for a, c in sorted(self.aliases.items())]
            return 200, {"aliases": items}
        if method == "POST" and path == "/collections/aliases":
            for action in body["actions"]:
                if "delete_alias" in action:
                    self.aliases.pop(action["delete_alias"]["alias_name"], None)
                if "create_alias" in action:
                    spec = action["create_alias"]
                    self.aliases[spec["alias_name"]] = spec["collection_name"]
            return 200, True
        if method == "GET" and path == "/collections":
            return 200, {"collections": [{"name": n} for n in sorted(self.collections)]}
        match = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
        if not match:
            return 404, {"status": {"error": f"no route {method} {path}"}}
        name, rest = match.group(1), match.group(2) or ""
        coll = self.collections.get(name)
        if method == "GET" and rest == "/exists":
            return 200, {"exists": coll is not None}
        if method == "PUT" and rest == "":
            if coll is not None:
                return 409, {"status": {"error": f"Collection `{name}` already exists!"}}
            self.collections[name] = {"create": body, "points": {}, "hnsw": dict(body.get("hnsw_config") or {}),
                                      "indexes": {}}  # fmt: skip
            return 200, True
        if coll is None:
            return 404, {"status": {"error": f"Collection `{name}` doesn't exist!"}}
        if method == "DELETE" and rest == "":
            del self.collections[name]
            return 200, True
        if method == "PUT" and rest == "/points":
            for point in body["points"]:
                coll["points"][str(point["id"])] = point
            return 200, {"operation_id": len(self.requests), "status": "completed"}
        if method == "POST" and rest == "/points/count":
            return 200, {"count": len(coll["points"])}
        if method == "PUT" and rest == "/index":
            coll["indexes"][body["field_name"]] = body["field_schema"]
            return 200, {"operation_id": len(self.requests), "status": "completed"}
        if method == "PATCH" and rest == "":
            coll["hnsw"].update(body.get("hnsw_config") or {})
            return 200, True
        if method == "GET" and rest == "":
            status = "green"
            if self.yellow_polls > 0:
                self.yellow_polls -= 1
                status = "yellow"
            return 200, self._info(coll, status)
        return 404, {"status": {"error": f"no route {method} {path}"}}

    @staticmethod
    def _info(coll: dict[str, Any], status: str) -> dict[str, Any]:
        create = coll["create"]
        params = {k: create[k] for k in ("shard_number", "replication_factor", "write_consistency_factor")
                  if k in create}  # fmt: skip
        return {
            "status": status,
            "optimizer_status": "ok",
            "segments_count": 1,
            "points_count": len(coll["points"]),
            "config": {
                "params": {"vectors": create["vectors"], **params},
                "hnsw_config": {
                    "m": coll["hnsw"].get("m", 16),
                    "ef_construct": coll["hnsw"].get("ef_construct", 100),
                    "full_scan_threshold": 10000,
                },
                "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
            },
            "payload_schema": {},
        }


@pytest.fixture
def qdrant_server() -> Iterator[FakeQdrantServer]:
    fake = FakeQdrantServer()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.requests.append(Request(self.command, url.path, parse_qs(url.query), body, dict(self.headers)))
            status, result = fake.handle(self.command, url.path, body)
            payload = result if url.path == "/" or status >= 400 else {"result": result, "status": "ok", "time": 0.0}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# -- helpers --------------------------------------------------------------------------------------------


def _built_version(tmp_path: Path, settings: Settings, memory_target: QdrantTarget) -> tuple[IndexConfig, str, int]:
    """An index with one version built (published to the in-memory store): config, version, chunks."""
    cfg = make_index(tmp_path)
    result = run_index(cfg, settings, embedder=FakeEmbedder(), target=memory_target)
    return cfg, result.version, result.published.points


def _server_index(cfg: IndexConfig, url: str, **qdrant: Any) -> IndexConfig:
    raw = {"url": url, "api_key_env": "GW_TEST_QDRANT_KEY", "upload_batch_size": 4, **qdrant}
    return cfg.model_copy(update={"qdrant": QdrantConfig.model_validate(raw)})


def _fast(target: QdrantTarget, sleeps: list[float] | None = None) -> QdrantTarget:
    """The target with a quick retry policy whose waits are recorded instead of slept."""
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    layout = replace(target.layout, poll_s=0.01) if target.layout else None
    return replace(target, retry=RetryPolicy(retries=3, backoff_s=0.5, max_backoff_s=1.5, sleep=record), layout=layout)


# -- what a publish sends to a server ------------------------------------------------------------------


def test_publish_to_a_server_sends_layout_defers_hnsw_and_indexes_before_the_alias_moves(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget, qdrant_server: FakeQdrantServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cfg, version, chunks = _built_version(tmp_path, settings, memory_target)
    monkeypatch.setenv("GW_TEST_QDRANT_KEY", "the-api-key")
    server_cfg = _server_index(
        cfg, qdrant_server.url, shard_number=3, replication_factor=2, write_consistency_factor=2, hnsw_m=32,
        hnsw_ef_construct=200, payload_indexes={"doc_id": "keyword", "metadata.team": "keyword", "page": "integer"},
    )  # fmt: skip
    target = _fast(resolve_target(server_cfg.qdrant, settings))
    qdrant_server.yellow_polls = 2  # HNSW "builds" for two polls

    result = publish_version(server_cfg, VersionStore(settings, cfg.name), version, target)

    collection = f"demo__{version}"
    assert result.changed and result.points == chunks
    batches = -(-chunks // 4)
    assert qdrant_server.calls() == [
        "GET /aliases",
        f"GET /collections/{collection}/exists",
        f"PUT /collections/{collection}",
        *[f"PUT /collections/{collection}/points"] * batches,
        f"POST /collections/{collection}/points/count",
        *[f"PUT /collections/{collection}/index"] * 3,
        f"PATCH /collections/{collection}",
        *[f"GET /collections/{collection}"] * 3,  # yellow, yellow, green
        "GET /aliases",
        "POST /collections/aliases",
    ]
    (create,) = qdrant_server.bodies("PUT", f"/collections/{collection}")
    assert create["vectors"] == {"size": 32, "distance": "Cosine"}
    assert (create["shard_number"], create["replication_factor"], create["write_consistency_factor"]) == (3, 2, 2)
    assert create["hnsw_config"] == {"m": 0, "ef_construct": 200}, "HNSW is off during the bulk upload"
    upserts = [r for r in qdrant_server.requests if r.path.endswith("/points") and r.method == "PUT"]
    assert all(r.query.get("wait") == ["true"] for r in upserts), "every write waits until applied"
    assert sum(len(r.body["points"]) for r in upserts) == chunks
    assert all(r.headers.get("api-key") == "the-api-key" for r in qdrant_server.requests if r.path != "/")
    indexes = qdrant_server.bodies("PUT", f"/collections/{collection}/index")
    assert sorted((b["field_name"], b["field_schema"]) for b in indexes) == [
        ("doc_id", "keyword"), ("metadata.team", "keyword"), ("page", "integer")
    ]  # fmt: skip
    (patch,) = qdrant_server.bodies("PATCH", f"/collections/{collection}")
    assert patch == {"hnsw_config": {"m": 32, "ef_construct": 200}}
    (aliases,) = qdrant_server.bodies("POST", "/collections/aliases")
    assert aliases == {"actions": [{"create_alias": {"collection_name": collection, "alias_name": "demo"}}]}
    assert qdrant_server.aliases == {"demo": collection}


def test_moving_the_alias_back_is_one_call_and_prune_drops_old_collections(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget, qdrant_server: FakeQdrantServer
) -> None:
    cfg, version, _ = _built_version(tmp_path, settings, memory_target)
    server_cfg = _server_index(cfg, qdrant_server.url)
    server_cfg = server_cfg.model_copy(update={"retention": server_cfg.retention.model_copy(update={"keep": 1})})
    target = _fast(resolve_target(server_cfg.qdrant, settings))
    store = VersionStore(settings, cfg.name)
    publish_version(server_cfg, store, version, target)
    live = f"demo__{version}"
    for older in ("demo__20250101T000000Z-00000001", "demo__20250102T000000Z-00000002"):
        qdrant_server.collections[older] = {**qdrant_server.collections[live]}
    qdrant_server.aliases["demo"] = "demo__20250102T000000Z-00000002"  # as if another version were live
    qdrant_server.requests.clear()

    publish_version(server_cfg, store, version, target)

    calls = qdrant_server.calls()
    # the collection exists (a retried publish): its dimension is checked, the points upserted again
    assert calls[:3] == ["GET /aliases", f"GET /collections/{live}/exists", f"GET /collections/{live}"]
    assert f"PUT /collections/{live}" not in calls and calls[-2:] == ["GET /aliases", "POST /collections/aliases"]
    (aliases,) = qdrant_server.bodies("POST", "/collections/aliases")
    assert aliases["actions"] == [
        {"delete_alias": {"alias_name": "demo"}},
        {"create_alias": {"collection_name": live, "alias_name": "demo"}},
    ], "delete + create in one request: readers never see the alias missing"

    assert prune(server_cfg, settings, target) == ["demo__20250101T000000Z-00000001"]
    assert sorted(qdrant_server.collections) == ["demo__20250102T000000Z-00000002", live]


def test_upload_table_calls_on_a_recording_client(tmp_path: Path, settings: Settings,
                                                  memory_target: QdrantTarget) -> None:  # fmt: skip
    cfg, version, chunks = _built_version(tmp_path, settings, memory_target)
    client = create_autospec(QdrantClient, instance=True)
    client.collection_exists.return_value = False
    client.count.return_value = models.CountResult(count=chunks)
    client.get_collection.return_value = SimpleNamespace(status=models.CollectionStatus.GREEN)
    layout = CollectionLayout(shard_number=2, replication_factor=3, write_consistency_factor=2,
                              payload_indexes=(("source", "keyword"),), hnsw_m=24, hnsw_ef_construct=128)  # fmt: skip

    got = upload_table(client, "c", VersionStore(settings, cfg.name).chunks_path(version), 32, "dot", 5, layout=layout)

    assert got == chunks
    names = [name for name, _, _ in client.method_calls]
    assert names == ["collection_exists", "create_collection", *["upsert"] * -(-chunks // 5), "count",
                     "create_payload_index", "update_collection", "get_collection"]  # fmt: skip
    create = client.create_collection.call_args
    assert create.args == ("c",)
    assert create.kwargs == {
        "vectors_config": models.VectorParams(size=32, distance=models.Distance.DOT),
        "shard_number": 2,
        "replication_factor": 3,
        "write_consistency_factor": 2,
        "hnsw_config": models.HnswConfigDiff(m=0, ef_construct=128),
    }
    assert all(call.kwargs["wait"] is True for call in client.upsert.call_args_list)
    client.create_payload_index.assert_called_once_with(
        "c", "source", field_schema=models.PayloadSchemaType.KEYWORD, wait=True
    )
    client.update_collection.assert_called_once_with("c", hnsw_config=models.HnswConfigDiff(m=24, ef_construct=128))


def test_without_deferral_hnsw_is_built_from_the_start(tmp_path: Path, settings: Settings,
                                                       memory_target: QdrantTarget) -> None:  # fmt: skip
    cfg, version, chunks = _built_version(tmp_path, settings, memory_target)
    client = create_autospec(QdrantClient, instance=True)
    client.collection_exists.return_value = False
    client.count.return_value = models.CountResult(count=chunks)
    client.get_collection.return_value = SimpleNamespace(status=models.CollectionStatus.GREEN)
    layout = CollectionLayout(hnsw_m=8, defer_hnsw=False)
    upload_table(client, "c", VersionStore(settings, cfg.name).chunks_path(version), 32, layout=layout)
    assert client.create_collection.call_args.kwargs == {
        "vectors_config": models.VectorParams(size=32, distance=models.Distance.COSINE),
        "hnsw_config": models.HnswConfigDiff(m=8, ef_construct=100),
    }, "unset shards/replication/consistency are left to the server"
    client.update_collection.assert_not_called()


def test_a_red_collection_is_not_published(tmp_path: Path, settings: Settings, memory_target: QdrantTarget) -> None:
    cfg, version, chunks = _built_version(tmp_path, settings, memory_target)
    client = create_autospec(QdrantClient, instance=True)
    client.collection_exists.return_value = False
    client.count.return_value = models.CountResult(count=chunks)
    client.get_collection.return_value = SimpleNamespace(status=models.CollectionStatus.RED)
    with pytest.raises(PublishError, match="is red"):
        upload_table(client, "c", VersionStore(settings, cfg.name).chunks_path(version), 32, layout=CollectionLayout())


def test_the_layout_is_accepted_by_local_mode(tmp_path: Path, settings: Settings, memory_target: QdrantTarget) -> None:
    """Local mode takes every argument the server path sends (and ignores them): the calls are well-formed."""
    cfg, version, chunks = _built_version(tmp_path, settings, memory_target)
    layout = CollectionLayout.from_config(
        QdrantConfig(shard_number=2, replication_factor=2, write_consistency_factor=1,
                     payload_indexes={"doc_id": "keyword", "chunk_index": "integer", "metadata.team": "keyword"})
    )  # fmt: skip
    with open_client(memory_target) as client:
        table = VersionStore(settings, cfg.name).chunks_path(version)
        assert upload_table(client, "with_layout", table, 32, layout=layout) == chunks
        assert client.count("with_layout", exact=True).count == chunks


# -- retries -------------------------------------------------------------------------------------------


def test_transient_errors_are_told_apart_from_the_callers_mistakes() -> None:
    request = httpx.Request("GET", "http://qdrant:6333/collections")
    headers = httpx.Headers()

    def http(code: int) -> UnexpectedResponse:
        return UnexpectedResponse(code, "x", b"{}", headers)

    class RpcError(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    transient = [
        ResponseHandlingException(httpx.ConnectError("refused", request=request)),
        ResponseHandlingException(httpx.ReadTimeout("slow", request=request)),
        httpx.RemoteProtocolError("server hung up", request=request),
        ConnectionResetError("reset"),
        TimeoutError("timed out"),
        *[http(code) for code in (500, 502, 503, 504, 429)],
        RpcError(grpc.StatusCode.UNAVAILABLE),
        RpcError(grpc.StatusCode.DEADLINE_EXCEEDED),
    ]
    permanent = [
        *[http(code) for code in (400, 401, 403, 404, 409, 422)],
        ResponseHandlingException(ValueError("unparseable response")),
        RpcError(grpc.StatusCode.INVALID_ARGUMENT),
        RpcError(grpc.StatusCode.UNAUTHENTICATED),
        ValueError("bad vector"),
        PublishError("count mismatch"),
    ]
    assert [is_transient(e) for e in transient] == [True] * len(transient)
    assert [is_transient(e) for e in permanent] == [False] * len(permanent)


def test_retry_policy_backs_off_exponentially_and_gives_up() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(retries=5, backoff_s=0.5, max_backoff_s=3, sleep=sleeps.append)
    assert policy.delays() == [0.5, 1, 2, 3, 3]
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("refused")
        return "ok"

    assert policy.call("op", flaky) == "ok" and len(attempts) == 3 and sleeps == [0.5, 1]

    sleeps.clear()
    with pytest.raises(ConnectionRefusedError):
        policy.call("op", lambda: (_ for _ in ()).throw(ConnectionRefusedError("down")))
    assert sleeps == [0.5, 1, 2, 3, 3]

    sleeps.clear()
    with pytest.raises(UnexpectedResponse):
        policy.call("op", lambda: (_ for _ in ()).throw(UnexpectedResponse(404, "nf", b"", httpx.Headers())))
    assert sleeps == [], "a 4xx is not retried"


def test_the_server_client_retries_5xx_and_lost_answers(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget, qdrant_server: FakeQdrantServer
) -> None:
    cfg, version, chunks = _built_version(tmp_path, settings, memory_target)
    server_cfg = _server_index(cfg, qdrant_server.url)
    sleeps: list[float] = []
    target = _fast(resolve_target(server_cfg.qdrant, settings), sleeps)
    collection = f"demo__{version}"
    # the create goes through but its answer is lost (a 502 from a proxy), then two upserts fail with 503
    qdrant_server.lost_answers[("PUT", f"/collections/{collection}")] = [502]
    qdrant_server.failures[("PUT", f"/collections/{collection}/points")] = [503, 503]

    result = publish_version(server_cfg, VersionStore(settings, cfg.name), version, target)

    assert result.points == chunks and qdrant_server.aliases == {"demo": collection}
    creates = [c for c in qdrant_server.calls() if c == f"PUT /collections/{collection}"]
    assert len(creates) == 2, "the create was retried; its 409 (it exists now) was accepted"
    upserts = qdrant_server.calls().count(f"PUT /collections/{collection}/points")
    assert upserts == -(-chunks // 4) + 2
    assert sleeps == [0.5, 0.5, 1.0]


def test_a_4xx_is_not_retried_and_nothing_goes_live(
    tmp_path: Path, settings: Settings, memory_target: QdrantTarget, qdrant_server: FakeQdrantServer
) -> None:
    cfg, version, _ = _built_version(tmp_path, settings, memory_target)
    server_cfg = _server_index(cfg, qdrant_server.url)
    sleeps: list[float] = []
    target = _fast(resolve_target(server_cfg.qdrant, settings), sleeps)
    collection = f"demo__{version}"
    qdrant_server.failures[("PUT", f"/collections/{collection}/index")] = [400]

    with pytest.raises(PublishError, match="400"):
        publish_version(server_cfg, VersionStore(settings, cfg.name), version, target)

    assert qdrant_server.calls().count(f"PUT /collections/{collection}/index") == 1 and sleeps == []
    assert qdrant_server.aliases == {} and qdrant_server.collections == {}, "the candidate was dropped"


def test_an_unreachable_server_is_retried_then_reported(settings: Settings) -> None:
    sleeps: list[float] = []
    target = QdrantTarget(kind="server", url="http://127.0.0.1:9", timeout_s=2,
                          retry=RetryPolicy(retries=2, backoff_s=0.1, sleep=sleeps.append))  # fmt: skip
    client = server_client(target, check_compatibility=False)
    try:
        with pytest.raises(ResponseHandlingException):
            client.get_collections()
    finally:
        client.close()
    assert sleeps == [0.1, 0.2]


# -- building the client -------------------------------------------------------------------------------


def test_server_targets_from_config_and_from_a_connection(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_QDRANT_KEY", "key-from-env")
    cfg = QdrantConfig(url="https://qdrant.example:6333", api_key_env="GW_TEST_QDRANT_KEY", prefer_grpc=True,
                       timeout_s=20, shard_number=4, retries=7, retry_backoff_s=1, retry_max_backoff_s=8)  # fmt: skip
    target = resolve_target(cfg, settings)
    assert (target.kind, target.url, target.api_key, target.prefer_grpc, target.timeout_s, target.grpc_port) == (
        "server", "https://qdrant.example:6333", "key-from-env", True, 20, 6334
    )  # fmt: skip
    assert target.retry.delays() == [1, 2, 4, 8, 8, 8, 8]
    assert target.layout == CollectionLayout.from_config(cfg) and target.layout.shard_number == 4

    conn = ServerConnection("http://qdrant:6333", api_key="conn-key", prefer_grpc=False, timeout_s=5, grpc_port=7334)
    from_conn = resolve_target(cfg, settings, conn)
    assert (from_conn.url, from_conn.api_key, from_conn.prefer_grpc, from_conn.timeout_s, from_conn.grpc_port) == (
        "http://qdrant:6333", "conn-key", False, 5, 7334
    ), "the Connection wins"  # fmt: skip
    assert from_conn.layout == target.layout, "the collection layout always comes from the index file"

    client = server_client(from_conn, check_compatibility=False)
    try:
        assert isinstance(client, RetryingQdrantClient) and client.retry == from_conn.retry
        options = client.init_options
        assert (options["url"], options["api_key"], options["prefer_grpc"], options["grpc_port"],
                options["timeout"]) == ("http://qdrant:6333", "conn-key", False, 7334, 5)  # fmt: skip
    finally:
        client.close()


def test_local_and_memory_targets_have_no_server_layout(settings: Settings) -> None:
    assert resolve_target(QdrantConfig(shard_number=3), settings).layout is None
    assert resolve_target(QdrantConfig(location=":memory:", replication_factor=2), settings).layout is None


@pytest.mark.parametrize(
    ("qdrant", "message"),
    [
        ({"replication_factor": 2, "write_consistency_factor": 3}, "write_consistency_factor must not exceed"),
        ({"write_consistency_factor": 2}, "write_consistency_factor must not exceed"),
        ({"payload_indexes": {"doc id": "keyword"}}, "identifiers"),
        ({"payload_indexes": {"doc_id": "varchar"}}, "qdrant.payload_indexes.doc_id"),
        ({"shard_number": 0}, "qdrant.shard_number"),
        ({"retries": -1}, "qdrant.retries"),
    ],
)
def test_server_options_are_validated(tmp_path: Path, qdrant: dict[str, Any], message: str) -> None:
    raw = {"name": "x", "sources": [{"name": "d", "type": "files", "path": str(tmp_path)}], "qdrant": qdrant}
    with pytest.raises(ConfigError, match=message):
        parse_index(raw)


# -- the Airflow Connection -----------------------------------------------------------------------------


def _conn_env(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_server_connection_from_an_airflow_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from groundwork_airflow import server_connection

    _conn_env(monkeypatch, "gw_qdrant_full", {
        "conn_type": "generic", "host": "qdrant.internal", "port": 6333, "password": "s3cret-key",
        "extra": {"https": True, "prefer_grpc": True, "grpc_port": 6334, "timeout": 12.5},
    })  # fmt: skip
    assert server_connection("gw_qdrant_full") == ServerConnection(
        url="https://qdrant.internal:6333", api_key="s3cret-key", prefer_grpc=True, timeout_s=12, grpc_port=6334
    )

    # extras from a URI-style connection are strings
    _conn_env(monkeypatch, "gw_qdrant_strings", {
        "conn_type": "generic", "host": "qdrant", "port": 6333,
        "extra": {"prefer_grpc": "false", "https": "0", "timeout": "30", "api_key": "extra-key"},
    })  # fmt: skip
    assert server_connection("gw_qdrant_strings") == ServerConnection(
        url="http://qdrant:6333", api_key="extra-key", prefer_grpc=False, timeout_s=30
    )

    # a full URL instead of host/port (the Qdrant provider's `url` extra); a host with its own scheme
    _conn_env(monkeypatch, "gw_qdrant_url", {"conn_type": "generic", "extra": {"url": "https://c1.cloud.qdrant.io"}})
    assert server_connection("gw_qdrant_url") == ServerConnection(url="https://c1.cloud.qdrant.io")
    _conn_env(monkeypatch, "gw_qdrant_scheme", {"conn_type": "generic", "host": "https://q.example", "port": 443})
    assert server_connection("gw_qdrant_scheme").url == "https://q.example:443"


def test_server_connection_absent_or_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    from groundwork_airflow import server_connection

    assert server_connection(None) is None
    assert server_connection("gw_qdrant_does_not_exist") is None
    _conn_env(monkeypatch, "gw_qdrant_no_host", {"conn_type": "generic", "password": "k"})
    assert server_connection("gw_qdrant_no_host") is None, "no host and no url: not a server (local mode stays)"
    _conn_env(monkeypatch, "gw_qdrant_bad_flag", {"conn_type": "generic", "host": "q", "extra": {"prefer_grpc": "sí"}})
    with pytest.raises(ConfigError, match=r"gw_qdrant_bad_flag.*prefer_grpc"):
        server_connection("gw_qdrant_bad_flag")
    _conn_env(monkeypatch, "gw_qdrant_bad_timeout", {"conn_type": "generic", "host": "q", "extra": {"timeout": "soon"}})
    with pytest.raises(ConfigError, match="timeout"):
        server_connection("gw_qdrant_bad_timeout")


def test_a_connection_and_the_index_file_make_one_target(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """What publish_task does: the Connection's endpoint, the index file's layout and retries."""
    from groundwork_airflow import server_connection

    _conn_env(monkeypatch, "qdrant_default", {"conn_type": "generic", "host": "qdrant", "port": 6333,
                                              "password": "k3y", "extra": {"timeout": 9}})  # fmt: skip
    cfg = QdrantConfig(replication_factor=2, payload_indexes={"source": "keyword"}, retries=2)
    target = resolve_target(cfg, settings, server_connection(cfg.connection_id))
    assert (target.kind, target.url, target.api_key, target.timeout_s) == ("server", "http://qdrant:6333", "k3y", 9)
    assert target.layout is not None and target.layout.replication_factor == 2
    assert target.layout.payload_indexes == (("source", "keyword"),) and len(target.retry.delays()) == 2
