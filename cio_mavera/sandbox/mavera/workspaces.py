"""/workspaces: the workspaces the sandbox key belongs to, and the workspace_id rules of other routes.

Focus groups require a `workspace_id` (mavera-api.md §7, features/workspaces); the other routes
that take one fall back to the key's default workspace. The sandbox account has two workspaces by
default (`state.default_workspaces`); `MaveraState.workspaces` is the knob (one workspace makes
discovery unambiguous).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import invalid, missing, not_found
from .params import DEFAULT_WORKSPACE_ID, page
from .resource import Resource
from .state import MaveraState


def workspace_of(account: MaveraState, body: dict[str, Any], *, required: bool) -> str:
    """The body's `workspace_id`, checked against the key's workspaces (the default one when
    absent and not required)."""
    ident = body.get("workspace_id")
    if ident is None:
        if required:
            raise missing("workspace_id")
        return DEFAULT_WORKSPACE_ID
    if not isinstance(ident, str) or ident not in {w["id"] for w in account.workspaces}:
        raise invalid("workspace_id", f"no workspace {ident!r} for this key; GET /workspaces "
                                      "lists them")
    return ident


class Workspaces(Resource):
    name = "/workspaces"

    async def get(self, request: Request) -> Response:
        search = (request.query_params.get("search") or "").lower()
        with self.account.lock:
            items = [dict(w) for w in self.account.workspaces if search in w["name"].lower()]
        return JSONResponse(page(request, items))


class WorkspaceById(Resource):
    name = "/workspaces/{id}"

    async def get(self, request: Request) -> Response:
        ident = request.path_params["workspace_id"]
        with self.account.lock:
            found = next((dict(w) for w in self.account.workspaces if w["id"] == ident), None)
        if found is None:
            raise not_found("workspace", ident)
        return JSONResponse(found)
