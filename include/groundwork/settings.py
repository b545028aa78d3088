"""Where groundwork keeps its state on this machine, and how that is chosen.

One data folder (``GROUNDWORK_HOME``, default ``./data``) holds everything a run
writes::

    data/
      qdrant/                      embedded Qdrant (qdrant-client local mode)
      qdrant.lock                  serialises the processes that open it
      cache/embeddings.sqlite      embedding cache (model identity + text hash -> vector)
      indexes/<index>/
        live.json                  the version the alias points at
        versions/<version>/        chunks.parquet + manifest.json (immutable)
        runs/<run_id>/             plan, document batches, batch outputs, quarantine
      airflow/                     AIRFLOW_HOME of the embedded Airflow

Index definitions are read from ``GROUNDWORK_INDEXES`` (default
``include/indexes`` of this repository). Nothing here reads secrets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INDEXES_DIR = REPO_ROOT / "include" / "indexes"


@dataclass(frozen=True)
class Settings:
    """Resolved locations of groundwork's state."""

    home: Path
    indexes_dir: Path

    @property
    def qdrant_path(self) -> Path:
        return self.home / "qdrant"

    @property
    def qdrant_lock(self) -> Path:
        return self.home / "qdrant.lock"

    @property
    def cache_path(self) -> Path:
        return self.home / "cache" / "embeddings.sqlite"

    def index_dir(self, index: str) -> Path:
        return self.home / "indexes" / index


def load_settings(home: str | Path | None = None, indexes_dir: str | Path | None = None) -> Settings:
    """Settings from arguments, else ``GROUNDWORK_HOME`` / ``GROUNDWORK_INDEXES``, else defaults."""
    resolved_home = Path(home or os.environ.get("GROUNDWORK_HOME") or Path.cwd() / "data")
    resolved_indexes = Path(indexes_dir or os.environ.get("GROUNDWORK_INDEXES") or DEFAULT_INDEXES_DIR)
    return Settings(home=resolved_home.resolve(), indexes_dir=resolved_indexes.resolve())
