"""`client.focus_groups`: asynchronous focus groups -- `run` creates one and polls it to completion.

The wire schema is an assumption (the reference found no focus-group API page): see
`focus_group_body`. What is documented is that creating one requires a `workspace_id`
(features/workspaces), so every create carries one: MAVERA_WORKSPACE_ID, or the key's only
workspace (`client.workspaces.current()`), resolved before anything is sent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ApiError
from ..core import Resource
from ..errors import SERVICE, FocusGroupTimeout
from ..models import FocusGroupResult, credits_of
from ..ratelimit import held
from .workspaces import Workspaces

PATH = "/focus-groups"
DONE = {"completed", "complete", "succeeded"}
FAILED = {"failed", "error", "cancelled", "canceled"}

Items = Sequence[str | Mapping[str, Any]]


class FocusGroups(Resource):
    """Focus groups (`/focus-groups`)."""

    def run(self, persona_ids: Sequence[str], questions: Items = (), *, stimuli: Items = (),
            name: str | None = None, workspace_id: str | None = None,
            sample_size: int | None = None, timeout_s: float = 120.0,
            poll_s: float = 2.0) -> FocusGroupResult:
        """Run a focus group on `stimuli` (texts to judge) with `questions`; poll until completed.

        Bare-string questions become 1-10 rating questions. Raises FocusGroupTimeout (naming the
        id, for `get`) if it is not completed within `timeout_s`. The completed group is cached,
        so a re-run costs nothing. Without MAVERA_WORKSPACE_ID (or `workspace_id`) and with more
        than one workspace on the key, raises ConfigError before sending.
        """
        workspace_id = workspace_id or Workspaces(self._core).current()
        body = focus_group_body(persona_ids, questions, stimuli, name, workspace_id, sample_size)
        core = self._core
        call = core.begin("focus_groups", "POST", PATH, body, cost="focus_group",
                          what=name or "focus group", cacheable=True)
        hit = call.cached()
        if hit is not None:
            return focus_group_result(hit, cached=True)
        call.reserve()  # one reservation for the whole group; its create and polls book their rows
        charged = 0
        try:
            with held(core.limits.focus_groups):
                created = self._post(body, cost=None)
                charged = credits_of(created)
                data = self._poll(str(created.get("id")), created, timeout_s, poll_s)
                charged = max(charged, credits_of(data))
        except FocusGroupTimeout:
            call.hold()  # the group may still finish and be charged
            raise
        except BaseException:
            call.settle(charged, record=False)
            raise
        call.settle(charged, record=False)
        call.store(data)
        return focus_group_result(data, cached=False, credits=charged)

    def create(self, persona_ids: Sequence[str], questions: Items = (), *, stimuli: Items = (),
               name: str | None = None, workspace_id: str | None = None,
               sample_size: int | None = None) -> dict[str, Any]:
        """Start a focus group without waiting; returns its id and status (fetch it with `get`).

        Budgeted at the group's worst case and booked at what creation reports; credits reported
        only with the results are booked by `run`, which also waits and caches.
        """
        workspace_id = workspace_id or Workspaces(self._core).current()
        body = focus_group_body(persona_ids, questions, stimuli, name, workspace_id, sample_size)
        return self._post(body, cost="focus_group", what=name or "focus group")

    def get(self, focus_group_id: str) -> dict[str, Any]:
        """A focus group's current state and, once completed, its results."""
        data, _ = self._core.call("focus_groups.get", "GET", f"{PATH}/{focus_group_id}")
        return data

    def _post(self, body: dict[str, Any], *, cost: str | None, what: str = "") -> dict[str, Any]:
        data, _ = self._core.call("focus_groups.create", "POST", PATH, body=body, cost=cost,
                                  what=what, idempotent=False)
        return data

    def _poll(self, group_id: str, created: dict[str, Any], timeout_s: float,
              poll_s: float) -> dict[str, Any]:
        charged = credits_of(created)
        deadline = time.monotonic() + timeout_s
        data = created
        while str(data.get("status", "")).lower() not in DONE:
            status = str(data.get("status", "")).lower()
            if status in FAILED:
                raise ApiError(f"Mavera focus group {group_id} {status}: {data.get('error')}",
                               service=SERVICE, body=data)
            if time.monotonic() + poll_s > deadline:
                raise FocusGroupTimeout(
                    f"focus group {group_id} still {status or 'pending'} after {timeout_s:.0f}s; "
                    f"fetch it later with client.focus_groups.get({group_id!r}) or pass a longer "
                    "timeout_s", focus_group_id=group_id, status=status)
            time.sleep(poll_s)
            data = self.get(group_id)
        # Credits may be reported at creation, on the result, or both (same figure): count once.
        extra = max(0, credits_of(data) - charged)
        if extra:
            self._core.record("focus_groups.result", extra, cached=False)
        return data


def focus_group_body(persona_ids: Sequence[str], questions: Items, stimuli: Items,
                     name: str | None, workspace_id: str,
                     sample_size: int | None) -> dict[str, Any]:
    """The create body. ASSUMPTION (reference §7 emulator suggestion): {name, workspace_id,
    persona_ids, questions: [{type, text, options?}], stimuli: [{id?, text}], sample_size};
    `workspace_id` is the one documented requirement."""
    body: dict[str, Any] = {
        "name": name or "cio-mavera focus group",
        "workspace_id": workspace_id,
        "persona_ids": list(persona_ids),
        "questions": [{"type": "rating", "text": q} if isinstance(q, str) else dict(q)
                      for q in questions],
    }
    if stimuli:
        body["stimuli"] = [s if isinstance(s, str) else dict(s) for s in stimuli]
    if sample_size is not None:
        body["sample_size"] = sample_size
    return body


def focus_group_result(data: dict[str, Any], *, cached: bool,
                       credits: int | None = None) -> FocusGroupResult:
    """A focus group body as per-question results, one row per persona answer, ranked stimuli."""
    results = data.get("results") or {}
    questions = list(results.get("questions") or []) if isinstance(results, dict) else []
    stimuli = list(results.get("stimuli") or []) if isinstance(results, dict) else []
    responses = []
    for question in questions:
        for answer in question.get("responses") or []:
            responses.append({"question": question.get("question") or question.get("text"),
                              "type": question.get("type"), **answer})
    if credits is None:
        credits = credits_of(data) or int(data.get("credits_used") or 0)
    return FocusGroupResult(str(data.get("id")), str(data.get("status")), questions, responses,
                            stimuli, credits, data, cached)
