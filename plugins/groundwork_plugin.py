"""groundwork's Airflow UI: an index/version browser with a rollback button, under Browse > Groundwork indexes.

The plugin mounts an app at ``/groundwork`` of the api-server and shows it in the Airflow UI as
an external view (an iframe). Airflow imports this file in every process that loads plugins
(scheduler, DAG processor, workers), so it imports nothing but Airflow's plugin base: FastAPI,
Airflow's auth code and the groundwork core are imported by the api-server on the first request
(:class:`GroundworkApp`). The pages are in ``groundwork_ui/`` (skipped by the plugin loader).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

MOUNT = "/groundwork"


class GroundworkApp:
    """An ASGI app that builds the real FastAPI app (``groundwork_ui.app``) on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from groundwork_ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


def _ui_root() -> str:
    """The path Airflow is served under (``[api] base_url``'s path), with a trailing slash."""
    path = urlsplit(conf.get("api", "base_url", fallback="") or "/").path or "/"
    return path if path.endswith("/") else f"{path}/"


class GroundworkPlugin(AirflowPlugin):
    name = "groundwork"
    fastapi_apps = [{"app": GroundworkApp(), "url_prefix": MOUNT, "name": "groundwork"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Groundwork indexes",
            "href": f"{_ui_root()}{MOUNT.strip('/')}/",
            "url_route": "groundwork",
            "category": "browse",
            "destination": "nav",
        }
    ]
