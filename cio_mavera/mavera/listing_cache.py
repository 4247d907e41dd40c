"""Free Mavera listings (the persona list, generation apps) kept for a while beside the response cache.

The response cache holds billed answers forever; listings cost nothing but change, so they are kept
only up to a maximum age -- long enough that a warm re-run of a report sends no request at all.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..files import atomic_write

log = logging.getLogger("cio_mavera.mavera.listings")

Listing = list[dict[str, Any]]

# Long enough that a report re-run the same day sends no listing request, short enough to see
# personas created since.
LISTING_MAX_AGE = dt.timedelta(days=1)


class ListingCache:
    """One JSON file per listing under `root`: `{"fetched_at": ISO time, "items": [...]}`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def get(self, name: str, max_age: dt.timedelta) -> Listing | None:
        """The stored listing if it is at most `max_age` old, else None (missing, stale, unreadable)."""
        path = self._path(name)
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(stored["fetched_at"])
            items = stored["items"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("ignoring unreadable listing %s (%s)", path.name, type(exc).__name__)
            return None
        return items if age <= max_age and isinstance(items, list) else None

    def put(self, name: str, items: Listing) -> None:
        """Store `items` as fetched now."""
        stored = {"fetched_at": dt.datetime.now(dt.UTC).isoformat(), "items": items}
        atomic_write(self._path(name), json.dumps(stored, ensure_ascii=False))

    def fetch(self, name: str, fetch: Callable[[], Listing], *, max_age: dt.timedelta | None,
              refresh: bool = False) -> Listing:
        """`fetch()`; with `max_age`, a stored copy young enough instead (`refresh` forces a fetch)."""
        if max_age is None:
            return fetch()
        if not refresh:
            stored = self.get(name, max_age)
            if stored is not None:
                return stored
        items = list(fetch())
        self.put(name, items)
        return items
