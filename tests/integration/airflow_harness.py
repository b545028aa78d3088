"""Run a real Airflow (``airflow standalone``) for integration tests and drive it through its REST API.

Typical use::

    env = airflow_env(tmp_path / "airflow", free_port(), extra={"GROUNDWORK_HOME": ...})
    migrate_db(env)
    with running_standalone(env, tmp_path / "standalone.log") as af:
        af.wait_for_dag(dag_id)
        af.unpause(dag_id)
        run_id = af.trigger(dag_id)
        af.wait_for_run(dag_id, run_id)          # AssertionError with task states and logs otherwise
        af.task_instances(dag_id, run_id)

Airflow runs in its own process group (scheduler, dag-processor, api-server, triggerer and the
LocalExecutor workers); leaving the ``with`` block signals the whole group and waits for it, killing
what does not stop. The metadata DB is SQLite under the given ``AIRFLOW_HOME``. Auth is the simple
auth manager with one user ``admin``; its generated password is read from
``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated`` and exchanged for a JWT at ``/auth/token``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from groundwork.offline import OFFLINE_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
USER = "admin"
FINISHED = {"success", "failed"}

__all__ = [
    "AirflowStandalone",
    "airflow_env",
    "free_port",
    "migrate_db",
    "readable_log",
    "running_standalone",
]


def free_port() -> int:
    """A TCP port nobody listens on right now (there is a small race until Airflow binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(
    airflow_home: Path,
    port: int,
    *,
    dags_folder: Path = REPO_ROOT / "dags",
    plugins_folder: Path | None = REPO_ROOT / "plugins",
    parallelism: int = 4,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of an isolated Airflow: this process's, minus any Airflow settings, plus ours.

    ``extra`` comes last (e.g. ``GROUNDWORK_HOME``, ``GROUNDWORK_INDEXES``, more ``AIRFLOW__*``).
    """
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW__") and k not in {"AIRFLOW_HOME", "AIRFLOW_CONFIG"}
    }
    env.update(OFFLINE_ENV)
    base_url = f"http://127.0.0.1:{port}"
    env.update(
        {
            "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Notice new or changed DAG files quickly (tests write index files while Airflow runs).
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        }
    )
    if plugins_folder is not None:
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(plugins_folder)
    else:
        empty = airflow_home / "plugins"
        empty.mkdir(exist_ok=True)
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(empty)
    env.update(extra or {})
    # Airflow's processes import this checkout's core and glue, whatever the venv's editable install points at.
    include = str(REPO_ROOT / "include")
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != include]
    env["PYTHONPATH"] = os.pathsep.join([include, *paths])
    return env


def migrate_db(env: Mapping[str, str], timeout_s: float = 180) -> None:
    """``airflow db migrate`` (creates the SQLite DB and ``airflow.cfg`` with its secrets)."""
    proc = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"({path}: {exc})"


class AirflowStandalone:
    """One ``airflow standalone`` process group and a small REST client for it."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.home = Path(self.env["AIRFLOW_HOME"])
        self.base_url = self.env["AIRFLOW__API__BASE_URL"].rstrip("/")
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._token: str | None = None
        self._http = httpx.Client(base_url=self.base_url, timeout=30)

    # -- processes -------------------------------------------------------------------------------

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [AIRFLOW, "standalone"],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals every Airflow process at once
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM the process group, wait for it to empty, SIGKILL whatever is left."""
        self._http.close()
        if self.process is None:
            return
        pgid = self.process.pid  # the group leader's pid (start_new_session)
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=max(deadline - time.monotonic(), 1))
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            end = time.monotonic() + 10
            while _group_alive(pgid) and time.monotonic() < end:
                time.sleep(0.2)
        self.process = None

    def wait_ready(self, timeout_s: float = 180) -> None:
        """Until the API answers (and the admin password file exists)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"airflow standalone exited early; its log ends:\n{_tail(self.log_path)}")
            try:
                if self._http.get("/api/v2/version").status_code == 200 and (self.home / PASSWORDS_FILE).is_file():
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow API not up after {timeout_s:.0f}s; standalone log ends:\n{_tail(self.log_path)}")

    # -- REST ------------------------------------------------------------------------------------

    def password(self) -> str:
        return str(json.loads((self.home / PASSWORDS_FILE).read_text())[USER])

    def token(self, refresh: bool = False) -> str:
        """A JWT from ``POST /auth/token`` (cached)."""
        if self._token is None or refresh:
            response = self._http.post("/auth/token", json={"username": USER, "password": self.password()})
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """An authenticated request; a 401 gets one retry with a fresh token."""
        for attempt in range(2):
            auth = {"Authorization": f"Bearer {self.token(refresh=attempt > 0)}"}
            response = self._http.request(method, path, headers={**(headers or {}), **auth}, **kwargs)
            if response.status_code != 401:
                break
        return response

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """JSON of an authenticated request; raises with the response body on an HTTP error."""
        response = self.request(method, path, **kwargs)
        if response.is_error:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/v2/importErrors")["import_errors"])

    def wait_for_dag(self, dag_id: str, timeout_s: float = 120) -> dict[str, Any]:
        """Until the dag-processor has parsed ``dag_id``; returns the DAG as the API shows it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = self.request("GET", f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return dict(response.json())
            if not self.alive():
                raise RuntimeError(f"airflow standalone exited; its log ends:\n{_tail(self.log_path)}")
            time.sleep(1)
        raise TimeoutError(
            f"DAG {dag_id} not parsed after {timeout_s:.0f}s; import errors: {self.import_errors()}\n"
            f"standalone log ends:\n{_tail(self.log_path)}"
        )

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """A manual run (as the UI's trigger button makes it: no logical date); returns its run id."""
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})})
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run, one per map index for mapped tasks."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.api(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                params={"limit": 100, "offset": len(out)},
            )
            out += page["task_instances"]
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """A task attempt's log as text (through the API; the log file under AIRFLOW_HOME if that fails)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
        try:
            response = self.request(
                "GET", path, params={"map_index": map_index, "full_content": True}, headers={"Accept": "text/plain"}
            )
            if response.status_code == 200 and response.text.strip():
                return response.text
        except httpx.HTTPError:
            pass
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        return _tail(folder / f"attempt={try_number}.log", 1_000_000)

    def run_report(self, dag_id: str, run_id: str, log_chars: int = 3000) -> str:
        """Run state, every task instance's state, and the log tails of those that did not succeed."""
        lines = [f"run {dag_id} / {run_id}: {self.dag_run(dag_id, run_id).get('state')}"]
        tis = self.task_instances(dag_id, run_id)
        for ti in sorted(tis, key=lambda t: (t["task_id"], t["map_index"])):
            lines.append(f"  {ti['task_id']}[{ti['map_index']}]: {ti['state']} (try {ti['try_number']})")
        for ti in tis:
            if ti["state"] not in {"success", "skipped", None} and ti["try_number"]:
                for attempt in range(1, int(ti["try_number"]) + 1):
                    text = readable_log(self.task_log(dag_id, run_id, ti["task_id"], attempt, ti["map_index"]))
                    lines.append(f"--- log {ti['task_id']}[{ti['map_index']}] attempt {attempt} ---")
                    lines.append(text[-log_chars:])
        lines.append(f"--- standalone log ---\n{_tail(self.log_path, log_chars)}")
        return "\n".join(lines)

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout_s: float = 300, expect: str = "success", poll_s: float = 2
    ) -> dict[str, Any]:
        """Until the run finishes; AssertionError with :meth:`run_report` unless it ends in ``expect``."""
        deadline = time.monotonic() + timeout_s
        run = self.dag_run(dag_id, run_id)
        while run["state"] not in FINISHED and time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"airflow standalone exited during the run:\n{_tail(self.log_path)}")
            time.sleep(poll_s)
            run = self.dag_run(dag_id, run_id)
        if run["state"] != expect:
            why = "timed out" if run["state"] not in FINISHED else f"ended {run['state']}"
            raise AssertionError(f"run {why} (expected {expect})\n{self.run_report(dag_id, run_id)}")
        return run


@contextmanager
def running_standalone(
    env: Mapping[str, str], log_path: Path, ready_timeout_s: float = 180
) -> Iterator[AirflowStandalone]:
    """A started, API-ready Airflow; every one of its processes is stopped on exit, whatever happened."""
    airflow = AirflowStandalone(env, log_path)
    try:
        airflow.start()
        airflow.wait_ready(ready_timeout_s)
        yield airflow
    finally:
        airflow.stop()


def readable_log(text: str) -> str:
    """Airflow 3 task logs are JSON lines: render them as ``time level event`` plus any exception."""
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if not isinstance(record, dict) or "event" not in record:
            out.append(line)
            continue
        out.append(f"{record.get('timestamp', '')} {record.get('level', '')}: {record['event']}")
        for error in record.get("error_detail") or []:
            frames = error.get("frames") or []
            where = f" at {frames[-1].get('filename')}:{frames[-1].get('lineno')}" if frames else ""
            out.append(f"    {error.get('exc_type')}: {error.get('exc_value')}{where}")
    return "\n".join(out)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies waiting to be reaped do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self/stat").is_file():
        return True  # no /proc: trust kill(0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields after the command: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
