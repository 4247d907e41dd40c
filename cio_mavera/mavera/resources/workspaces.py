"""`client.workspaces`: the workspaces the key can see, and the one a focus group runs in."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ...errors import ApiError, ConfigError
from ..core import Resource
from ..listing_cache import LISTING_MAX_AGE

SETTING = "MAVERA_WORKSPACE_ID"


class Workspaces(Resource):
    """Workspaces (`/workspaces`, documented in mavera-api.md §9.1)."""

    def list(self, *, max_age: dt.timedelta | None = None) -> list[dict[str, Any]]:
        """Every workspace the key belongs to (free; with `max_age` a stored copy may answer)."""
        core = self._core

        def fetch() -> list[dict[str, Any]]:
            return core.paged("workspaces.list", "/workspaces")

        return core.listings.fetch("workspaces", fetch, max_age=max_age, refresh=core.refresh)

    def get(self, workspace_id: str) -> dict[str, Any]:
        """One workspace (raises NotFound)."""
        data, _ = self._core.call("workspaces.get", "GET", f"/workspaces/{workspace_id}")
        return data

    def current(self) -> str:
        """The workspace id calls that require one are sent with, found before anything is sent.

        MAVERA_WORKSPACE_ID when set; else the key's only workspace, from GET /workspaces (the one
        documented way to discover it; kept for a day, so a warm re-run asks nothing). Several
        workspaces, none, or a listing the key may not read: ConfigError naming the variable.
        """
        core = self._core
        if core.workspace_id:
            return core.workspace_id
        try:
            found = self.list(max_age=LISTING_MAX_AGE)
        except ApiError as exc:
            raise ConfigError(f"{SETTING} is not set and listing the key's workspaces failed "
                              f"({exc}); set {SETTING} to the workspace id (ws_...) from the "
                              "Mavera dashboard's URL, app.mavera.io/workspaces/<id>") from exc
        ids = [str(w["id"]) for w in found if isinstance(w, dict) and w.get("id")]
        if len(ids) == 1:
            core.workspace_id = ids[0]
            return ids[0]
        seen = ", ".join(f"{w.get('id')} ({w.get('name')})" for w in found[:10]) or "none"
        raise ConfigError(f"{SETTING} is not set and the key sees {len(ids)} workspaces ({seen}); "
                          f"set {SETTING} in .env to the one focus groups should run in")
