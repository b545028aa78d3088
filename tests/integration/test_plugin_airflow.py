"""The groundwork UI plugin in a real ``airflow standalone``: registered, authenticated, its button works.

Airflow loads ``plugins/`` and mounts the app at ``/groundwork``; ``GET /api/v2/plugins`` lists it
with its external view. Airflow does not authenticate plugin apps: ours must answer 401 without a
token, 403 with a forged one, and 200 with the JWT from ``/auth/token`` (as a bearer token, and as
the ``_token`` cookie the UI's session uses). Then the rollback button's request is made as the
page's script makes it, with nothing but the session cookie: ``POST /api/v2/dags/groundwork_rollback
/dagRuns`` with ``logical_date: null`` and conf {index, version, reason}; the run moves the index
back and the plugin shows the new live version, the pin and the audit entry.

The two versions are built by the core in this process (fake embedder, quality gate off, embedded
Qdrant in a folder) while Airflow starts; the rollback task, in its own process, finds v1's
collection kept and moves the alias. The api-server never opens that folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml

from groundwork.config import load_index
from groundwork.pipeline import run_index
from groundwork.settings import Settings
from groundwork.vectorstore import resolve_target
from tests.conftest import FakeEmbedder, make_index, write_docs
from tests.integration.airflow_harness import AirflowStandalone, airflow_env, free_port, migrate_db

pytestmark = pytest.mark.airflow

INDEX = "ui_it"
ROLLBACK_DAG = "groundwork_rollback"
REASON = "v2 lost the battery answers"


def _build_two_versions(tmp_path: Path, settings: Settings) -> tuple[str, str]:
    cfg = load_index(settings.indexes_dir / f"{INDEX}.yaml")
    target = resolve_target(cfg.qdrant, settings)  # the folder the rollback task opens after us
    v1 = run_index(cfg, settings, embedder=FakeEmbedder(), target=target).version
    write_docs(tmp_path / "docs", {"delta.md": "# Delta\n\nDelta valves regulate the flow of water in old mills."})
    v2 = run_index(cfg, settings, embedder=FakeEmbedder(), target=target).version
    return v1, v2


def test_plugin_in_a_real_airflow(tmp_path: Path) -> None:
    started = time.perf_counter()
    home = tmp_path / "groundwork"
    settings = Settings(home=home, indexes_dir=tmp_path / "indexes")
    settings.indexes_dir.mkdir()
    cfg = make_index(
        tmp_path, name=INDEX, schedule=None, validation={"enabled": False}, qdrant={"path": str(home / "qdrant")}
    )
    (settings.indexes_dir / f"{INDEX}.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = airflow_env(
        home / "airflow",
        free_port(),
        extra={"GROUNDWORK_HOME": str(home), "GROUNDWORK_INDEXES": str(settings.indexes_dir)},
    )
    migrate_db(env)
    airflow = AirflowStandalone(env, tmp_path / "standalone.log")
    anonymous = httpx.Client(base_url=airflow.base_url, timeout=30)
    try:
        airflow.start()
        v1, v2 = _build_two_versions(tmp_path, settings)  # while Airflow starts
        airflow.wait_ready()
        token = airflow.token()
        bearer = {"Authorization": f"Bearer {token}"}
        session = {"Cookie": f"_token={token}"}  # what the browser sends from the UI's iframe

        # Registered, with its app and its menu entry.
        plugins = {p["name"]: p for p in airflow.api("GET", "/api/v2/plugins")["plugins"]}
        assert "groundwork" in plugins, f"plugins: {sorted(plugins)}"
        plugin = plugins["groundwork"]
        assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/groundwork"]
        (view,) = plugin["external_views"]
        assert (view["name"], view["href"], view["url_route"]) == ("Groundwork indexes", "/groundwork/", "groundwork")
        assert airflow.api("GET", "/api/v2/plugins/importErrors")["import_errors"] == []

        # Authentication: Airflow's own JWT check guards the plugin.
        assert anonymous.get("/groundwork/api/indexes").status_code == 401
        assert anonymous.get("/groundwork/").status_code == 401
        assert anonymous.get("/groundwork/api/indexes", headers={"Authorization": "Bearer forged"}).status_code == 403
        response = anonymous.get("/groundwork/api/indexes", headers=bearer)
        assert response.status_code == 200, response.text
        (summary,) = response.json()
        assert summary["index"] == INDEX and summary["live"]["version"] == v2 and summary["version_count"] == 2
        page = anonymous.get(f"/groundwork/indexes/{INDEX}", headers=session)
        assert page.status_code == 200 and f'data-version="{v1}"' in page.text, page.text[:500]

        # The rollback button's request, with the session cookie only.
        airflow.wait_for_dag(ROLLBACK_DAG)
        airflow.unpause(ROLLBACK_DAG)
        run = anonymous.post(
            f"/api/v2/dags/{ROLLBACK_DAG}/dagRuns",
            headers={**session, "Content-Type": "application/json", "Accept": "application/json"},
            json={"logical_date": None, "conf": {"index": INDEX, "version": v1, "reason": REASON},
                  "note": f"groundwork UI: roll {INDEX} back to {v1}: {REASON}"},
        )  # fmt: skip
        assert run.status_code == 200, run.text
        run_id = run.json()["dag_run_id"]
        airflow.wait_for_run(ROLLBACK_DAG, run_id, timeout_s=180)

        versions = anonymous.get(f"/groundwork/api/indexes/{INDEX}/versions", headers=bearer).json()
        assert versions["live"]["version"] == v1 and versions["pin"]["version"] == v1
        assert [(v["version"], v["live"], v["pinned"]) for v in versions["versions"]] == [
            (v2, False, False),
            (v1, True, True),
        ]
        (entry,) = anonymous.get(f"/groundwork/api/indexes/{INDEX}", headers=bearer).json()["audit"]
        assert (entry["from_version"], entry["to_version"], entry["reason"]) == (v2, v1, REASON)
        assert entry["run_id"] == run_id and entry["restored_from_snapshot"] is False  # v1's collection was kept
    finally:
        anonymous.close()
        airflow.stop()
    assert time.perf_counter() - started < 240
