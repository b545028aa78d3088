"""A record of something a run could not use, with the reason, for the run summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Entries that were never documents of the index (a picture in a docs folder, a link out of the
# source): recorded, but neither held against a candidate nor announced by a run that changed nothing.
OUT_OF_SCOPE = frozenset({"UnsupportedFileType", "SymlinkOutsideSource"})


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
