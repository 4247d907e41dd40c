"""/focus-groups: asynchronous focus groups that complete over polls, charged once when created.

Creating one requires a `workspace_id` of the key (400 `missing_field` without it), the one part
of the request the docs state (features/workspaces); the rest of the schema is assumed (§7).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .clock import now_iso
from .errors import MaveraHTTPError, invalid, missing, not_found
from .focus_answers import (
    MAX_FOCUS_PERSONAS,
    focus_cost,
    focus_results,
    parse_questions,
    parse_stimuli,
)
from .params import page, read_body
from .resource import Resource
from .state import FocusGroup, MaveraState
from .workspaces import workspace_of

# Concurrency cap (§1.4): at most this many focus groups generating at once per account.
FOCUS_GROUP_MAX_CONCURRENT = 5


class FocusGroups(Resource):
    name = "/focus-groups"

    async def get(self, request: Request) -> Response:
        """Not documented (§7); lists without advancing any group's status."""
        account = self.account
        with account.lock:
            items = [{k: v for k, v in _object(account, g).items() if k != "results"}
                     for g in reversed(account.focus_groups.values())]
        return JSONResponse(page(request, items))

    async def post(self, request: Request) -> Response:
        body = await read_body(request)
        workspace_id = workspace_of(self.account, body, required=True)
        persona_ids = body.get("persona_ids")
        if persona_ids is None:
            raise missing("persona_ids")
        if not isinstance(persona_ids, list) or not 1 <= len(persona_ids) <= MAX_FOCUS_PERSONAS:
            raise invalid("persona_ids", f"must be a list of 1 to {MAX_FOCUS_PERSONAS} persona ids")
        account = self.account
        personas = []
        for ident in persona_ids:
            persona = account.persona(ident) if isinstance(ident, str) else None
            if persona is None:
                raise MaveraHTTPError(400, "invalid_persona", f"Unknown persona_id '{ident}'.", "persona_ids")
            personas.append(persona)
        stimuli = parse_stimuli(body)
        questions = parse_questions(body, has_stimuli=bool(stimuli))
        sample_size = body.get("sample_size", len(personas))
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
            raise invalid("sample_size", "must be a positive integer")
        cost = focus_cost(len(personas), len(stimuli), len(questions))
        result = focus_results(personas, questions, stimuli)
        now = now_iso()
        with account.lock:
            if account.active_focus_groups() >= FOCUS_GROUP_MAX_CONCURRENT:
                raise self.concurrency_error(
                    f"Too many focus groups generating at once (max {FOCUS_GROUP_MAX_CONCURRENT}); "
                    "poll the running ones until they complete.")
            self.charge(self.name, cost)
            ident = account.new_id("fg_", 16)
            echo = {"name": body.get("name") or f"Focus group {ident[-6:]}",
                    "workspace_id": workspace_id,
                    "persona_ids": list(persona_ids),
                    "personas": [{"id": p.id, "name": p.name, "category": p.category} for p in personas],
                    "questions": questions, "stimuli": stimuli, "sample_size": sample_size}
            group = FocusGroup(id=ident, body=echo, result=result, credits=cost, created_at=now)
            account.focus_groups[ident] = group
            out = _object(account, group)
        return JSONResponse({**out, "usage": {"credits_used": cost}}, status_code=201)


class FocusGroupById(Resource):
    name = "/focus-groups/{id}"

    async def get(self, request: Request) -> Response:
        """The group, one step further along (pending -> processing -> completed) for each poll."""
        ident = request.path_params["focus_group_id"]
        account = self.account
        with account.lock:
            group = account.focus_groups.get(ident)
            if group is None:
                raise not_found("focus group", ident)
            if group.status != "completed":
                group.polls += 1
                group.updated_at = now_iso()
                if group.polls >= account.focus_group_polls_to_complete:
                    group.status, group.completed_at = "completed", group.updated_at
                else:
                    group.status = "processing"
            return JSONResponse(_object(account, group))


def _object(account: MaveraState, group: FocusGroup) -> dict[str, Any]:
    out = {"id": group.id, "object": "focus_group", **group.body, "status": group.status,
           "credits_used": group.credits, "created_at": group.created_at,
           "updated_at": group.updated_at or group.created_at, "completed_at": group.completed_at,
           "progress": {"polls": group.polls,
                        "polls_to_complete": account.focus_group_polls_to_complete},
           "sandbox": True}
    if group.status == "completed":
        out["results"] = group.result
    return out
