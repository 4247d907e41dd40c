"""Timestamps in the two shapes Mavera resources carry: unix seconds and ISO-8601 UTC."""

from __future__ import annotations

import datetime as dt
import time


def now_unix() -> int:
    """Now, in unix seconds (chat completions, responses, personas)."""
    return int(time.time())


def now_iso() -> str:
    """Now, as `2026-01-01T00:00:00Z` (Mave threads, generations, focus groups)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
