"""The groundwork UI plugin (``plugins/``): its FastAPI app over index state the core really built.

One index, built once for the module with the fake embedder and in-memory Qdrant: v1 and v2
pass the quality gate and the promotion gate (golden queries), v3 is rejected by the quality
gate, then a rollback makes v1 live again (pin + audit entry). The app is exercised with
``TestClient``: Airflow's own ``get_user`` guards every route (401/403 without a valid token);
with it overridden, the HTML and JSON show what the core recorded, and the Data Docs route never
serves a file outside the version's ``validation/`` folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# Importing Airflow writes airflow.cfg into AIRFLOW_HOME: keep it out of ~/airflow (before any airflow import).
if not os.environ.get("AIRFLOW_HOME"):
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="groundwork-test-airflow-")

from groundwork.config import load_index
from groundwork.errors import ValidationFailed
from groundwork.lifecycle import rollback
from groundwork.pipeline import run_index
from groundwork.settings import Settings
from groundwork.vectorstore import QdrantTarget, reset_memory_clients
from groundwork.versions import VersionStore
from tests.conftest import REPO_ROOT, FakeEmbedder, make_index, write_docs

PLUGINS = REPO_ROOT / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))  # as Airflow does with its plugins folder

GOLDEN = {
    "queries": [
        {"id": "gears", "query": "brass gears and a spring", "relevant": {"alpha.md": 2}},
        {"id": "battery", "query": "solar power battery", "relevant": ["beta.md"]},
    ]
}
PIN_REASON = "v2 answers support questions worse"


@dataclass(frozen=True)
class World:
    settings: Settings
    v1: str
    v2: str
    v3: str  # rejected by the quality gate


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("ui")
    settings = Settings(home=tmp / "data", indexes_dir=tmp / "indexes")
    settings.indexes_dir.mkdir()
    golden = tmp / "golden.yaml"
    golden.write_text(yaml.safe_dump(GOLDEN))
    drift_off = {"max_document_drift": None, "max_chunk_drift": None}
    base = make_index(tmp, evaluation={"golden": str(golden), "k": 3, "tolerance": 1.0}, validation=drift_off)
    index_file = settings.indexes_dir / "demo.yaml"
    index_file.write_text(yaml.safe_dump(base.model_dump(mode="json")))
    cfg = load_index(index_file)
    reset_memory_clients()
    target = QdrantTarget(kind="memory")
    try:
        v1 = run_index(cfg, settings, embedder=FakeEmbedder(), target=target, trigger="scheduled").version
        write_docs(tmp / "docs", {"delta.md": "# Delta\n\nDelta valves regulate the flow of water in old mills."})
        v2 = run_index(cfg, settings, embedder=FakeEmbedder(), target=target).version
        write_docs(tmp / "docs", {"epsilon.md": "# Epsilon\n\nEpsilon lamps glow green when the boiler is warm."})
        strict = cfg.model_copy(update={"validation": cfg.validation.model_copy(update={"max_chars": 20})})
        before = set(VersionStore(settings, "demo").versions())
        with pytest.raises(ValidationFailed):
            run_index(strict, settings, embedder=FakeEmbedder(), target=target)
        (v3,) = set(VersionStore(settings, "demo").versions()) - before
        rollback(cfg, settings, v1, reason=PIN_REASON, target=target, run_id="manual__rollback-1")
    finally:
        reset_memory_clients()
    yield World(settings, v1, v2, v3)


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The app reads ``runtime_settings()``: point it at the module's world."""
    monkeypatch.setenv("GROUNDWORK_HOME", str(world.settings.home))
    monkeypatch.setenv("GROUNDWORK_INDEXES", str(world.settings.indexes_dir))
    return world


class FakeUser:
    def get_name(self) -> str:
        return "ui-tester"


@pytest.fixture
def client(env: World) -> Iterator[Any]:
    """The plugin app mounted as Airflow mounts it, with Airflow's ``get_user`` overridden (a signed-in user)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from groundwork_ui.app import MOUNT, create_app, get_user

    app = create_app()
    app.dependency_overrides[get_user] = FakeUser
    root = FastAPI()
    root.mount(MOUNT, app)
    with TestClient(root) as test_client:
        yield test_client


@pytest.fixture
def auth_manager() -> Iterator[None]:
    """Airflow's configured auth manager (simple), as the api-server has it, for real token checks."""
    from airflow.api_fastapi.app import _AuthManagerState, create_auth_manager

    before = _AuthManagerState.instance
    create_auth_manager()
    yield
    _AuthManagerState.instance = before


def _rows(page: str) -> dict[str, str]:
    """The version rows of an index page, by version id."""
    return {m.group(1): m.group(0) for m in re.finditer(r'<tr[^>]* id="v-([^"]+)">.*?</tr>', page, re.S)}


# -- authentication -------------------------------------------------------------------------------


def _routes(world: World) -> list[str]:
    return [
        "/groundwork/",
        "/groundwork/indexes/demo",
        f"/groundwork/indexes/demo/versions/{world.v1}/data-docs/index.html",
        "/groundwork/api/indexes",
        "/groundwork/api/indexes/demo",
        "/groundwork/api/indexes/demo/versions",
    ]


def test_every_route_needs_an_authenticated_airflow_user(env: World, auth_manager: None) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from groundwork_plugin import GroundworkApp

    root = FastAPI()
    root.mount("/groundwork", GroundworkApp())  # the lazy app the plugin registers, without any override
    with TestClient(root) as anonymous:
        for route in _routes(env):
            response = anonymous.get(route)
            assert response.status_code == 401, route
            assert env.v1 not in response.text and "demo.yaml" not in response.text
            forged = anonymous.get(route, headers={"Authorization": "Bearer not-a-jwt"})
            assert forged.status_code == 403, route
            cookie = anonymous.get(route, cookies={"_token": "not-a-jwt"})
            assert cookie.status_code == 403, route
        # FastAPI's generated docs would be open to anyone: there are none.
        for route in ("/groundwork/openapi.json", "/groundwork/docs", "/groundwork/redoc"):
            assert anonymous.get(route).status_code == 404


# -- HTML -----------------------------------------------------------------------------------------


def test_index_list_page(client: Any, world: World) -> None:
    response = client.get("/groundwork/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "signed in as ui-tester" in page
    assert 'href="/groundwork/indexes/demo"' in page
    assert world.v1 in page  # live
    assert world.v3 in page and ">rejected<" in page  # the last version built, and what the gate said
    assert ">pinned<" in page and PIN_REASON in page
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and "script-src 'nonce-" in csp


def test_index_page_shows_versions_live_marker_gate_pin_and_audit(client: Any, world: World) -> None:
    response = client.get("/groundwork/indexes/demo")
    assert response.status_code == 200
    page = response.text
    rows = _rows(page)
    assert list(rows) == [world.v3, world.v2, world.v1], "newest first"
    live, v2, rejected = rows[world.v1], rows[world.v2], rows[world.v3]

    assert ">LIVE<" in live and ">PINNED<" in live and 'class="live"' in live
    assert ">LIVE<" not in v2 and ">LIVE<" not in rejected
    assert ">passed<" in live and ">passed<" in v2 and ">rejected<" in rejected
    assert "<li><code>expect_column_values_to_be_between(char_count)</code></li>" in rejected  # max_chars
    for version, row in rows.items():
        assert f'href="/groundwork/indexes/demo/versions/{version}/data-docs/index.html"' in row
    assert "by_title (400 chars, overlap 0)" in v2 and "all-MiniLM-L6-v2" in v2
    assert re.search(r"hit@3 \d\.\d{3}", v2) and "mrr@3" in v2 and "ndcg@3" in v2
    assert "against live " + world.v1 in v2

    # Only v2 can be rolled back to: v1 is live, v3 was never live. The form needs a reason.
    assert f'data-version="{world.v2}"' in v2 and "Roll back to this version" in v2
    assert 'name="reason" required' in v2
    assert "<form" not in live and "live now" in live
    assert "<form" not in rejected and "never live" in rejected
    assert "not evaluated" in rejected, "the quality gate stopped its run before the golden queries"

    # The pin banner and the audit log of the rollback.
    assert f"pinned to <code>{world.v1}</code>" in page and "groundwork unpin demo" in page
    audit = page.split("<h2>Audit log</h2>", 1)[1]
    assert f"<code>{world.v2}</code> → <code>{world.v1}</code>" in audit
    assert PIN_REASON in audit and "manual__rollback-1" in audit

    # The button talks to Airflow's REST API (one level above the plugin) with the user's session.
    assert 'data-airflow-api="/api/v2"' in page and 'data-dag="groundwork_rollback"' in page
    nonce = re.search(r"script-src 'nonce-([^']+)'", response.headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
    assert f'<script nonce="{nonce}">' in page
    assert '"/dags/" + encodeURIComponent(dag) + "/dagRuns"' in page
    assert "logical_date: null, conf: {index, version, reason}" in page
    assert 'credentials: "same-origin"' in page


def test_unknown_index_is_a_404(client: Any) -> None:
    assert client.get("/groundwork/indexes/nope").status_code == 404
    assert client.get("/groundwork/api/indexes/nope").status_code == 404
    assert client.get("/groundwork/api/indexes/nope/versions").status_code == 404
    assert client.get("/groundwork/indexes/..%2F..%2Fetc/versions").status_code == 404


# -- JSON -----------------------------------------------------------------------------------------


def test_json_index_list(client: Any, world: World) -> None:
    response = client.get("/groundwork/api/indexes")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    (demo,) = response.json()
    assert demo["index"] == "demo" and demo["error"] is None
    assert demo["live"]["version"] == world.v1 and demo["live"]["collection"] == f"demo__{world.v1}"
    assert demo["version_count"] == 3
    assert demo["pinned"] is True and demo["pin"]["version"] == world.v1 and demo["pin"]["reason"] == PIN_REASON
    assert demo["latest"]["version"] == world.v3 and demo["latest"]["gate"] == "rejected"
    assert demo["url"] == "/groundwork/indexes/demo" and demo["api"] == "/groundwork/api/indexes/demo"


def test_json_versions(client: Any, world: World) -> None:
    response = client.get("/groundwork/api/indexes/demo/versions")
    assert response.status_code == 200
    body = response.json()
    assert body["index"] == "demo" and body["live"]["version"] == world.v1 and body["pin"]["version"] == world.v1
    by_id = {v["version"]: v for v in body["versions"]}
    assert [v["version"] for v in body["versions"]] == [world.v3, world.v2, world.v1]
    v1, v2, v3 = by_id[world.v1], by_id[world.v2], by_id[world.v3]

    assert (v1["live"], v2["live"], v3["live"]) == (True, False, False)
    assert (v1["pinned"], v2["pinned"]) == (True, False)
    assert v1["trigger"] == "scheduled" and v2["trigger"] == "manual" and v2["parent"] == world.v1
    assert (v1["gate"]["verdict"], v2["gate"]["verdict"], v3["gate"]["verdict"]) == ("passed", "passed", "rejected")
    assert v3["gate"]["failed"] == ["expect_column_values_to_be_between(char_count)"]
    assert v2["gate"]["data_docs_url"] == f"/groundwork/indexes/demo/versions/{world.v2}/data-docs/index.html"
    assert v1["documents"]["total"] == 3 and v2["documents"]["total"] == 4 and v2["documents"]["new"] == 1
    assert v2["chunks"]["total"] > v1["chunks"]["total"] and v2["chunks"]["carried"] == v1["chunks"]["total"]
    assert v2["config"]["chunking"]["strategy"] == "by_title" and v2["config"]["model_id"] == "fake@1:norm"

    assert v1["evaluation"]["verdict"] == "passed" and v1["evaluation"]["live_version"] is None
    assert v2["evaluation"]["live_version"] == world.v1 and v2["evaluation"]["k"] == 3
    assert set(v2["evaluation"]["metrics"]) == {"hit", "recall", "mrr", "ndcg"}
    assert v3["evaluation"] is None, "the quality gate stopped the run before evaluation"

    assert (v1["rollback"]["allowed"], v2["rollback"]["allowed"], v3["rollback"]["allowed"]) == (False, True, False)

    detail = client.get("/groundwork/api/indexes/demo").json()
    assert [v["version"] for v in detail["versions"]] == [world.v3, world.v2, world.v1]
    (entry,) = detail["audit"]
    assert entry["action"] == "rollback" and entry["reason"] == PIN_REASON
    assert (entry["from_version"], entry["to_version"]) == (world.v2, world.v1)


def test_a_broken_manifest_is_reported_on_its_row(client: Any, world: World) -> None:
    store = VersionStore(world.settings, "demo")
    path = store.manifest_path(world.v3)
    original = path.read_text()
    try:
        path.write_text("{ not json")
        page = client.get("/groundwork/indexes/demo")
        assert page.status_code == 200 and "manifest unreadable" in _rows(page.text)[world.v3]
        api = client.get("/groundwork/api/indexes/demo/versions").json()
        assert "manifest unreadable" in {v["version"]: v for v in api["versions"]}[world.v3]["error"]
    finally:
        path.write_text(original)


# -- Data Docs ------------------------------------------------------------------------------------


def test_data_docs_are_served_read_only(client: Any, world: World) -> None:
    base = f"/groundwork/indexes/demo/versions/{world.v3}/data-docs"
    page = client.get(f"{base}/index.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["x-content-type-options"] == "nosniff"
    folder = VersionStore(world.settings, "demo").version_dir(world.v3) / "validation"
    assert page.content == (folder / "index.html").read_bytes()
    nested = next(p for p in folder.rglob("*.html") if p.parent != folder)
    assert client.get(f"{base}/{nested.relative_to(folder).as_posix()}").content == nested.read_bytes()
    assert client.get(f"{base}/").content == page.content  # the folder itself: its index.html
    assert client.post(f"{base}/index.html").status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "../manifest.json",
        "..%2Fmanifest.json",
        "%2e%2e/manifest.json",
        "%2e%2e%2fmanifest.json",
        "static/../../manifest.json",
        "static/..%2F..%2Fmanifest.json",
        "..%2F..%2F..%2Flive.json",
        "..%5Cmanifest.json",
        "%2Fetc%2Fpasswd",
        "//etc/passwd",
        "index.html%00.png",
        "no-such-file.html",
    ],
)
def test_data_docs_refuse_paths_outside_the_folder(client: Any, world: World, path: str) -> None:
    response = client.get(f"/groundwork/indexes/demo/versions/{world.v1}/data-docs/{path}")
    assert response.status_code == 404
    assert world.v1 not in response.text and "config_fingerprint" not in response.text


def test_data_docs_refuse_links_out_of_the_folder_and_unknown_versions(client: Any, world: World) -> None:
    folder = VersionStore(world.settings, "demo").version_dir(world.v1) / "validation"
    link = folder / "leak.json"
    link.symlink_to(folder.parent / "manifest.json")
    try:
        assert client.get(f"/groundwork/indexes/demo/versions/{world.v1}/data-docs/leak.json").status_code == 404
    finally:
        link.unlink()
    for version in ("20990101T000000Z-deadbeef", "..", "..%2F..", world.v1 + "%2F..%2F" + world.v2):
        assert client.get(f"/groundwork/indexes/demo/versions/{version}/data-docs/index.html").status_code == 404
    assert client.get(f"/groundwork/indexes/..%2Fdemo/versions/{world.v1}/data-docs/index.html").status_code == 404


# -- the plugin module ----------------------------------------------------------------------------


def test_links_follow_the_mount_point(env: World) -> None:
    """Under a base path (``[api] base_url`` with a path) the links and the REST API move with it."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from groundwork_ui.app import create_app, get_user

    app = create_app()
    app.dependency_overrides[get_user] = FakeUser
    root = FastAPI(root_path="/airflow")  # as Airflow's create_app() does with base_url's path
    root.mount("/groundwork", app)
    with TestClient(root) as test_client:
        page = test_client.get("/airflow/groundwork/indexes/demo").text
    assert 'data-airflow-api="/airflow/api/v2"' in page
    assert 'href="/airflow/groundwork/"' in page
    assert f'href="/airflow/groundwork/indexes/demo/versions/{env.v1}/data-docs/index.html"' in page


def test_the_plugin_module_is_light_and_airflow_loads_exactly_it(tmp_path: Path) -> None:
    """Every Airflow process imports plugins: the module must not pull FastAPI, pandas, Qdrant or the core."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(PLUGINS)!r})
        before = set(sys.modules)
        import groundwork_plugin
        heavy = sorted(m for m in set(sys.modules) - before
                       if m.split(".")[0] in {{"fastapi", "starlette", "pandas", "pyarrow", "qdrant_client", "numpy",
                                               "groundwork", "groundwork_ui", "great_expectations", "torch"}})
        from airflow._shared.plugins_manager import _load_plugins_from_plugin_directory
        plugins, errors = _load_plugins_from_plugin_directory({str(PLUGINS)!r})
        print(json.dumps({{
            "heavy": heavy,
            "plugins": [p.name for p in plugins],
            "errors": errors,
            "stray": sorted(m for m in ("app", "state", "pages", "__init__") if m in sys.modules),
            "apps": [(a["url_prefix"], type(a["app"]).__name__) for p in plugins for a in p.fastapi_apps],
            "views": [v for p in plugins for v in p.external_views],
        }}))
        """
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__API__BASE_URL": "http://localhost:8080"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert out["plugins"] == ["groundwork"] and out["errors"] == {}
    assert out["stray"] == [], "the helpers in groundwork_ui/ must not be loaded as plugin files"
    assert out["apps"] == [["/groundwork", "GroundworkApp"]]
    (view,) = out["views"]
    assert view["name"] == "Groundwork indexes" and view["href"] == "/groundwork/"
    assert view["url_route"] == "groundwork" and view["category"] == "browse"
