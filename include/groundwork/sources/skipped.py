"""A record of something a run could not use, with the reason, for the run summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Skipped:
    """One file, row or document that was left out of a run, and why."""

    source: str
    uri: str
    error_type: str
    message: str
    stage: str = "discover"  # discover | partition | chunk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
