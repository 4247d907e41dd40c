"""Values App API requests share: times as unix seconds and the filter that matches everyone."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd

from ..errors import InvalidParameter

# Reference §3.6: `cio_id exists` matches every person; `id exists` misses email-only people.
MATCH_ALL: dict[str, Any] = {"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]}


def to_unix(value: int | float | str | date | datetime | pd.Timestamp, name: str = "time") -> int:
    """Unix seconds for an int, ISO string, date or datetime (naive values are UTC)."""
    if isinstance(value, bool):
        raise InvalidParameter(f"{name}={value!r} is not a time")
    if isinstance(value, int | float):
        return int(value)
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidParameter(f"{name}={value!r} is not a time (use unix seconds, "
                               "an ISO date like 2025-01-31, or a datetime)") from None
    if pd.isna(stamp):
        raise InvalidParameter(f"{name} is missing")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp())
