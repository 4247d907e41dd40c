"""`client.mave`: the Mave research agent and its threads."""

from __future__ import annotations

from typing import Any

from ..core import Resource
from ..models import MaveResult, credits_of


class Mave(Resource):
    """Mave Agent (`/mave/chat`, `/mave/threads`)."""

    def chat(self, message: str, *, thread_id: str | None = None,
             workspace_id: str | None = None) -> MaveResult:
        """Ask the Mave research agent; pass `thread_id` to continue a thread."""
        body: dict[str, Any] = {"message": message}
        if thread_id:
            body["thread_id"] = thread_id
        if workspace_id:
            body["workspace_id"] = workspace_id
        core = self._core
        # Not retried once it may have reached the server: a repeat is another charge and message.
        data, cached = core.call("mave.chat", "POST", "/mave/chat", body=body, cost="mave",
                                 what=message[:60], cacheable=True, idempotent=False,
                                 slot=core.limits.mave)
        return MaveResult(
            content=str(data.get("content") or ""),
            sources=list(data.get("sources") or []),
            personas_used=list(data.get("personas_used") or []),
            validation=data.get("validation"),
            thread_id=data.get("thread_id"),
            credits=credits_of(data),
            raw=data,
            cached=cached,
        )

    def threads(self) -> list[dict[str, Any]]:
        """Every Mave thread of the key's default workspace."""
        return self._core.paged("mave.threads", "/mave/threads")

    def thread(self, thread_id: str) -> dict[str, Any]:
        """One Mave thread with its messages, sources and personas used."""
        data, _ = self._core.call("mave.thread", "GET", f"/mave/threads/{thread_id}")
        return data
