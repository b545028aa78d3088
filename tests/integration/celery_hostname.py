"""``[core] hostname_callable`` for the Celery stack test: each worker reports its own name.

Two Celery workers on one machine share its hostname, so task instances could not tell them apart.
The test starts each worker with ``GW_WORKER_NAME`` and points Airflow here; processes without it
(scheduler, api-server) report the machine's name as usual.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("GW_WORKER_NAME") or socket.getfqdn()
