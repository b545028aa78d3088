"""Time windows: the data interval a run reads from time-partitioned sources.

A :class:`TimeWindow` is half-open, ``[start, end)``, in UTC. Under Airflow it is
the run's data interval (a scheduled or backfill run of a data-interval
timetable); runs without one (manual, REST, CLI) read every source whole.
:func:`as_utc` turns the values sources carry (datetimes, dates, ISO-8601 text,
epoch seconds) into aware UTC datetimes, or None when they are not times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

__all__ = ["TimeWindow", "as_utc"]


def as_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from a cell or file value; naive values are taken as UTC; None if not a time."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        stamp = datetime.combine(value, time())
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


@dataclass(frozen=True)
class TimeWindow:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        start, end = as_utc(self.start), as_utc(self.end)
        if start is None or end is None:
            raise ValueError(f"a time window needs two datetimes, got {self.start!r} and {self.end!r}")
        if not start < end:
            raise ValueError(f"a time window must end after it starts: [{start.isoformat()}, {end.isoformat()})")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @classmethod
    def from_interval(cls, start: Any, end: Any) -> TimeWindow | None:
        """The window of a data interval, or None when there is none (or it is empty, as for plain cron runs)."""
        begin, finish = as_utc(start), as_utc(end)
        if begin is None or finish is None or not begin < finish:
            return None
        return cls(begin, finish)

    def contains(self, moment: datetime) -> bool:
        stamp = as_utc(moment)
        return stamp is not None and self.start <= stamp < self.end

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> TimeWindow:
        return cls(datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]))

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"
