"""Mavera responses cached as JSON files keyed by a hash of the canonical request.

The key covers method, path, the JSON body with sorted keys, and the identity of the API base (so
sandbox and live, or two deployments, never share answers) -- never the API key, which is not part
of what was asked and must not reach disk even hashed. Writes are atomic (`files.atomic_write`);
an unreadable or mismatched entry counts as a miss and is rewritten by the next call.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..files import atomic_write

log = logging.getLogger("cio_mavera.mavera.cache")

FORMAT = 1
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def base_identity(base_url: str) -> str:
    """The API base as it matters for caching.

    A loopback sandbox gets a new port every time it starts; its answers depend on the request, not
    the port, so the port is left out (the connection's cache dir already separates sandbox seeds).
    """
    parts = urlsplit(base_url.rstrip("/"))
    host = "loopback" if parts.hostname in _LOOPBACK else parts.netloc.lower()
    return f"{parts.scheme}://{host}{parts.path}"


def canonical_request(method: str, path: str, body: Any, base: str) -> str:
    """The exact text that is hashed into a cache key."""
    return json.dumps({"v": FORMAT, "base": base_identity(base), "method": method.upper(),
                       "path": "/" + path.lstrip("/"), "body": body},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def request_key(method: str, path: str, body: Any, base: str) -> str:
    """sha256 hex of the canonical request."""
    return hashlib.sha256(canonical_request(method, path, body, base).encode()).hexdigest()


class ResponseCache:
    """JSON files under `root/<2 hex>/<key>.json`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The stored response for `key`, or None (missing, corrupt or of another format)."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if entry.get("format") != FORMAT or entry.get("key") != key or "response" not in entry:
                raise ValueError("entry does not match its key or format")
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring corrupt Mavera cache entry %s (%s); it will be rewritten",
                        path.name, type(exc).__name__)
            self.misses += 1
            return None
        self.hits += 1
        return entry["response"]

    def put(self, key: str, response: Any, *, endpoint: str = "") -> Path:
        """Store `response` for `key` atomically; return the file path."""
        entry = {"format": FORMAT, "key": key, "endpoint": endpoint,
                 "stored_at": datetime.now(UTC).isoformat(), "response": response}
        return atomic_write(self._path(key), json.dumps(entry, ensure_ascii=False))
