"""The groundwork UI's FastAPI app, mounted by ``groundwork_plugin`` at ``/groundwork`` of Airflow's api-server.

Routes (relative to the mount)::

    GET /                                                         the index list (HTML)
    GET /indexes/{index}                                          one index: versions, pin, audit log (HTML)
    GET /indexes/{index}/versions/{version}/data-docs/{path}      the version's quality-gate Data Docs (read-only)
    GET /api/indexes                                              the index list (JSON)
    GET /api/indexes/{index}                                      one index, its versions and audit log (JSON)
    GET /api/indexes/{index}/versions                             its versions (JSON)

Plugin apps are not authenticated by Airflow: every route here depends on Airflow's own
``get_user`` (the dependency of ``/api/v2``), which validates the JWT from
``Authorization: Bearer`` or the UI's ``_token`` cookie, so a request without a valid token gets
401/403. Rollbacks are not a route here: the page's button triggers the ``groundwork_rollback``
DAG through ``POST /api/v2/dags/groundwork_rollback/dagRuns`` with the user's own session.

State is read per request through the core with ``groundwork_airflow.runtime_settings()``,
the same settings the DAG tasks use.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from groundwork.settings import Settings
from groundwork_airflow import runtime_settings
from groundwork_ui import pages, state

__all__ = ["MOUNT", "create_app", "get_user"]

MOUNT = "/groundwork"
CurrentUser = Annotated[BaseUser, Depends(get_user)]

router = APIRouter(dependencies=[Depends(get_user)])


# -- helpers --------------------------------------------------------------------------------------


def _links(request: Request) -> pages.Links:
    """Paths as this request sees them: the app's mount point and, above it, Airflow's REST API."""
    base = str(request.scope.get("root_path") or "").rstrip("/")
    airflow_root = base.removesuffix(MOUNT) if base.endswith(MOUNT) else base
    return pages.Links(base=base, api_v2=f"{airflow_root}/api/v2")


def _csp(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
    )


def _html(body: str, nonce: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        body,
        status_code=status_code,
        headers={
            "Content-Security-Policy": _csp(nonce),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def _index_file(settings: Settings, index: str) -> Path:
    path = state.index_files(settings).get(index)
    if path is None:
        raise HTTPException(status_code=404, detail=f"no index {index!r} in {settings.indexes_dir}")
    return path


def _with_urls(rows: list[dict[str, Any]], index: str, links: pages.Links) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        gate = row.get("gate")
        if gate is not None:
            row = {**row, "gate": {**gate, "data_docs_url": links.data_docs(index, row["version"]) if gate["data_docs"]
                                   else None}}  # fmt: skip
        out.append(row)
    return out


# -- HTML -----------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def list_view(request: Request, user: CurrentUser) -> HTMLResponse:
    settings = runtime_settings()
    nonce = secrets.token_urlsafe(16)
    body = pages.list_page(
        state.list_indexes(settings), _links(request), nonce=nonce, user=user.get_name(),
        indexes_dir=str(settings.indexes_dir),
    )  # fmt: skip
    return _html(body, nonce)


@router.get("/indexes/{index}", response_class=HTMLResponse)
def index_view(index: str, request: Request, user: CurrentUser) -> HTMLResponse:
    settings = runtime_settings()
    nonce = secrets.token_urlsafe(16)
    links = _links(request)
    path = state.index_files(settings).get(index)
    if path is None:
        body = pages.error_page("No such index", f"There is no index file for {index!r}.", links, nonce=nonce)
        return _html(body, nonce, status_code=404)
    detail = state.index_detail(settings, index, path)
    return _html(pages.index_page(detail, links, nonce=nonce, user=user.get_name()), nonce)


@router.get("/indexes/{index}/versions/{version}/data-docs/{path:path}")
def data_docs(index: str, version: str, path: str) -> Response:
    """A file of the version's Data Docs folder; anything outside it (``..``, absolute, links out) is a 404."""
    settings = runtime_settings()
    _index_file(settings, index)
    if version not in state.versions_of(settings, index):
        raise HTTPException(status_code=404, detail=f"index {index!r} has no version {version!r}")
    target = _inside(state.data_docs_dir(settings, index, version), path)
    if target is None:
        raise HTTPException(status_code=404, detail="no such Data Docs file")
    return FileResponse(
        target,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", "Referrer-Policy": "same-origin"},
    )


def _inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` when it is a file inside ``root`` (after resolving links), else None."""
    if "\x00" in relative or "\\" in relative or relative.startswith("/"):
        return None
    parts = [p for p in relative.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return None
    try:
        base = root.resolve(strict=True)
        target = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base):
        return None
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


# -- JSON -----------------------------------------------------------------------------------------


@router.get("/api/indexes")
def api_indexes(request: Request) -> JSONResponse:
    links = _links(request)
    indexes = state.list_indexes(runtime_settings())
    return _json([{**ix, "url": links.index(ix["index"]), "api": links.api_index(ix["index"])} for ix in indexes])


@router.get("/api/indexes/{index}")
def api_index(index: str, request: Request) -> JSONResponse:
    settings = runtime_settings()
    detail = state.index_detail(settings, index, _index_file(settings, index))
    links = _links(request)
    return _json({**detail, "versions": _with_urls(detail["versions"], index, links)})


@router.get("/api/indexes/{index}/versions")
def api_versions(index: str, request: Request) -> JSONResponse:
    settings = runtime_settings()
    detail = state.index_detail(settings, index, _index_file(settings, index))
    rows = _with_urls(detail["versions"], index, _links(request))
    return _json({"index": index, "live": detail["live"], "pin": detail["pin"], "versions": rows})


def create_app() -> FastAPI:
    """The app the plugin mounts; no OpenAPI/docs routes (they would be unauthenticated)."""
    app = FastAPI(title="groundwork", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)
    return app
