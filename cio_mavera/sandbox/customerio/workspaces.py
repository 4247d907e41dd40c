"""/v1/workspaces: the account's workspaces with their counts (the sandbox's account has one)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..state import sandbox_of
from ..workspace.campaigns import SERIES_INDEX
from .data import cio_data
from .responses import app_json


async def list_workspaces(request: Request) -> JSONResponse:
    state = sandbox_of(request)
    data = cio_data(state)
    ws = data.ws
    sent = int(ws.metric_cube[:, SERIES_INDEX["sent"], :].sum())
    people = data.people.n + len(state.cio.written.created)
    return app_json({"workspaces": [{
        "id": int(ws.workspace_id), "name": f"Sandbox (seed {ws.seed})",
        "messages_sent": sent, "billable_messages_sent": sent,
        "people": people, "object_types": 0, "objects": 0}]})


routes = [Route("/v1/workspaces", list_workspaces, methods=["GET"])]
