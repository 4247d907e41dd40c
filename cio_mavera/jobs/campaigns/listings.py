"""The free Mavera listings (personas, generation apps), kept for a day so warm re-runs send nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

_LISTING_MAX_AGE = dt.timedelta(hours=24)


def cached_listing(client: Any, name: Literal["personas", "generation_apps"],
                   max_age: dt.timedelta = _LISTING_MAX_AGE) -> list[dict[str, Any]]:
    """`client.list_personas()` or `client.generation_apps()`, kept for a day beside the response cache.

    The client caches only billed calls; these free listings are cached here so a warm re-run
    sends no request at all. `client.refresh` forces a new listing.
    """
    fetch: Callable[[], list[dict[str, Any]]] = {
        "personas": lambda: client.list_personas(),
        "generation_apps": lambda: client.generation_apps(),
    }[name]
    root = getattr(getattr(client, "connection", None), "cache_dir", None)
    if root is None:
        return list(fetch())
    path = Path(root) / "mavera-listings" / f"{name}.json"
    if path.is_file() and not getattr(client, "refresh", False):
        try:
            stored = json.loads(path.read_text())
            age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(stored["fetched_at"])
            if age <= max_age and isinstance(stored.get("items"), list):
                return stored["items"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable or foreign: fetch again
    items = list(fetch())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"fetched_at": dt.datetime.now(dt.UTC).isoformat(), "items": items}))
    tmp.replace(path)
    return items


