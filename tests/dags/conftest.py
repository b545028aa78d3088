"""Importing Airflow writes ``airflow.cfg`` into ``AIRFLOW_HOME``: keep it out of ``~/airflow`` in tests."""

from __future__ import annotations

import os
import tempfile

# Must run before any test module of this folder imports airflow (pytest imports conftest files first).
if not os.environ.get("AIRFLOW_HOME"):
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="groundwork-test-airflow-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
