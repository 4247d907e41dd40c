"""`client.personas`: list, get, create and update personas; `ensure` one by name without ever
duplicating it; and `changes`, the one place that decides whether a persona differs from what is
wanted (ensure's update and job 2's plan both ask it, so a report never disagrees with a PATCH).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from ...errors import ApiError, ServerError
from ..core import RETRY, Resource
from ..errors import DuplicateName
from ..locks import name_lock

log = logging.getLogger("cio_mavera.mavera")

# Creating a persona is retried only after a lookup confirmed the failed attempt created nothing.
CREATE_ATTEMPTS = 3


class Personas(Resource):
    """Base and custom personas (`/personas`)."""

    def list(self, search: str | None = None, *,
             max_age: dt.timedelta | None = None) -> list[dict[str, Any]]:
        """Every persona (base and custom) visible to the key, optionally filtered by `search`.

        The listing is free; with `max_age` a copy stored at most that long ago is returned without
        a request, so a warm re-run sends none. The client's `refresh` forces a new listing.
        """
        core = self._core

        def fetch() -> list[dict[str, Any]]:
            return core.paged("personas.list", "/personas", {"search": search} if search else None)

        return core.listings.fetch(_listing_name(search), fetch, max_age=max_age,
                                   refresh=core.refresh)

    def get(self, persona_id: str) -> dict[str, Any]:
        """One persona by id (raises NotFound)."""
        data, _ = self._core.call("personas.get", "GET", f"/personas/{persona_id}")
        return data

    def find(self, name: str) -> dict[str, Any] | None:
        """The persona named `name` (case- and space-insensitive), preferring custom ones, or None."""
        listed = self.list(search=" ".join(name.split()))
        matches = [p for p in listed if same_name(str(p.get("name", "")), name)]
        if not matches:
            return None
        matches.sort(key=lambda p: (not p.get("is_custom", False), p.get("created_at") or 0,
                                    str(p.get("id"))))
        return matches[0]

    def create(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create a custom persona (300 credits). Prefer `ensure`, which never duplicates."""
        # The reference's create example always names a pipeline; north_star needs only name and
        # description. Callers may pass another pipeline_type.
        body = {"pipeline_type": "north_star", "name": name, **fields}
        data, _ = self._core.call("personas.create", "POST", "/personas", body=body, cost="persona",
                                  what=f"persona {name!r}", idempotent=False)
        return data

    def update(self, persona_id: str, **fields: Any) -> dict[str, Any]:
        """Update a custom persona's fields (base personas are read-only: Forbidden)."""
        data, _ = self._core.call("personas.update", "PATCH", f"/personas/{persona_id}",
                                  body=fields, cost="persona_update", what=f"persona {persona_id}",
                                  idempotent=True)
        return data

    def ensure(self, name: str, **fields: Any) -> tuple[dict[str, Any], bool]:
        """The persona named `name`, created only if absent and updated if its fields changed.

        Returns (persona, created). Looks up by name first and holds a per-name lock across
        processes; when the creating POST fails in a way that may have reached the server, it looks
        up again and retries only if nothing was created, so a retry or re-run never makes a
        duplicate or pays 300 credits twice.
        """
        with name_lock(self._core.locks_dir, "persona", name):
            existing = self.find(name)
            if existing is not None:
                return self._update_if_changed(existing, fields), False
            for attempt in range(1, CREATE_ATTEMPTS + 1):
                try:
                    return self.create(name, **fields), True
                except DuplicateName:
                    found = self.find(name)
                    if found is None:
                        raise
                    return self._update_if_changed(found, fields), False
                except ServerError as exc:
                    # The POST may or may not have reached the server: only a lookup can tell.
                    found = self.find(name)
                    if found is not None:
                        self._book_lost_creation(name, exc)
                        return found, True
                    if attempt == CREATE_ATTEMPTS:
                        raise
                    log.warning("creating persona %r failed (%s) and it does not exist; retrying",
                                name, type(exc).__name__)
                    time.sleep(RETRY.backoff(attempt))
            raise AssertionError("unreachable")  # pragma: no cover

    def changes(self, persona: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
        """The wanted fields whose value differs from what the server holds for `persona`.

        A field is held when the server echoes its key, at the top level or else in `details`. A
        key it does not echo cannot be compared and is left out (a re-run must not PATCH every
        time); a key it echoes as null is compared, so null against a wanted value is a change.
        Names compare case- and space-insensitively, as `find` matches them. Base personas are
        read-only, so nothing about them counts as a change.
        """
        if not persona.get("is_custom", True):
            return {}
        held = self._completed(persona, wanted)
        details = held["details"] if isinstance(held.get("details"), dict) else {}
        changed = {}
        for field_name, value in wanted.items():
            if field_name in held:
                current = held[field_name]
            elif field_name in details:
                current = details[field_name]
            else:
                continue
            if not _same(field_name, current, value):
                changed[field_name] = value
        return changed

    def _completed(self, persona: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
        """`persona`, completed by its GET when a listing item lacks wanted fields."""
        held = dict(persona)
        if any(k not in held for k in wanted) and "details" not in held and held.get("id"):
            # GET /personas/{id} is NOT FOUND in the docs; without it only listed fields compare.
            with suppress(ApiError):
                held.update(self.get(str(held["id"])))
        return held

    def _update_if_changed(self, persona: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
        changes = self.changes(persona, fields)
        if not changes:
            return persona
        log.info("updating persona %s: %s changed", persona.get("id"), ", ".join(sorted(changes)))
        return self.update(str(persona["id"]), **changes)

    def _book_lost_creation(self, name: str, exc: Exception) -> None:
        """Account a creation whose response was lost: the server charged it all the same."""
        self._core.book("personas.create", self._core.worst_case("persona"))
        log.warning("persona %r was created although the response was lost (%s); reusing it",
                    name, type(exc).__name__)


def same_name(a: str, b: str) -> bool:
    """Persona names match ignoring case and runs of whitespace."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _same(field_name: str, held: Any, wanted: Any) -> bool:
    if field_name == "name" and isinstance(held, str) and isinstance(wanted, str):
        return same_name(held, wanted)
    return _normalise(held) == _normalise(wanted)


def _normalise(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _listing_name(search: str | None) -> str:
    """The listing cache's name for a (searched) persona list."""
    if not search:
        return "personas"
    return "personas-search-" + hashlib.sha256(search.encode()).hexdigest()[:12]
