"""/mave/chat and /mave/threads: the Mave research agent, its threads, costs and concurrency cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .base_personas import Persona
from .clock import now_iso
from .errors import invalid, missing, not_found
from .params import page, read_body
from .prose import mave_answer
from .resource import Resource
from .sse import pieces, sse
from .state import Thread
from .text import count_tokens, digest, rng_for, snippet
from .workspaces import workspace_of

# Concurrency cap (§1.4): at most this many Mave requests in flight per account.
MAVE_MAX_CONCURRENT = 10
# Credit costs (§1.5) by complexity; follow-ups in a thread are 30-50% cheaper ([2ND]).
MAVE_COST_RANGES = {"SIMPLE": (10, 15), "MODERATE": (20, 30), "COMPLEX": (30, 50),
                    "STRATEGIC": (40, 75)}
MAVE_FOLLOW_UP_DISCOUNT = 0.7
_MARKERS = ("strateg", "plan", "roadmap", "compare", "competit", "segment", "analy", "why",
            "research", "prioriti")


class MaveChat(Resource):
    name = "/mave/chat"

    async def post(self, request: Request) -> Response:
        body = await read_body(request)
        message = body.get("message")
        if message is None:
            raise missing("message")
        if not isinstance(message, str) or not message.strip():
            raise invalid("message", "must be a non-empty string")
        thread_id = body.get("thread_id")
        account = self.account
        with account.lock:
            thread = account.threads.get(thread_id) if thread_id else None
            if thread_id and thread is None:
                raise not_found("mave thread", str(thread_id), "thread_id")
            if account.mave_in_flight >= MAVE_MAX_CONCURRENT:
                raise self.concurrency_error(
                    f"Too many concurrent Mave requests (max {MAVE_MAX_CONCURRENT}).")
            account.mave_in_flight += 1
        try:
            if account.mave_latency_s:
                await asyncio.sleep(account.mave_latency_s)
            while not account.mave_open.is_set():  # held by a test
                await asyncio.sleep(0.005)
            out = self._answer(body, message, thread)
        finally:
            with account.lock:
                account.mave_in_flight -= 1
        if body.get("stream"):
            return StreamingResponse(_events(out), media_type="text/event-stream")
        return JSONResponse(out)

    def _answer(self, body: dict[str, Any], message: str, thread: Thread | None) -> dict[str, Any]:
        account = self.account
        workspace_id = workspace_of(account, body, required=False)
        complexity = _complexity(message)
        turn = len(thread.messages) // 2 if thread else 0
        cost = _cost(message, complexity, follow_up=thread is not None)
        personas = _voices(message, account.all_personas())
        content, sources = mave_answer(message, turn, personas)
        rng = rng_for("mave-validation", message, turn)
        confidence = round(0.6 + rng.random() * 0.35, 2)
        validation = {"confidence_score": confidence,
                      "hallucination_risk": "low" if confidence >= 0.8 else "medium",
                      "unsupported_claims": [],
                      "sources": [{"title": s["title"], "url": s["url"],
                                   "relevance": round(0.5 + rng.random() * 0.5, 2)} for s in sources]}
        personas_used = [{"id": p.id, "name": p.name, "category": p.category} for p in personas]
        now = now_iso()
        with account.lock:
            if thread is not None and thread.id not in account.threads:
                raise not_found("mave thread", thread.id, "thread_id")  # deleted meanwhile
            self.charge(self.name, cost)
            if thread is None:
                thread = Thread(id=account.new_id("mave_thread_", 16), title=snippet(message, 60),
                                workspace_id=workspace_id,
                                created_at=now, updated_at=now, complexity=complexity)
                account.threads[thread.id] = thread
            msg_id = account.new_id("mave_msg_", 16)
            thread.messages.append({"id": account.new_id("mave_msg_", 16), "role": "user",
                                    "content": message, "persona": None, "created_at": now})
            thread.messages.append({"id": msg_id, "role": "assistant", "content": content,
                                    "persona": {"id": personas[0].id, "name": personas[0].name},
                                    "created_at": now})
            thread.sources.extend({"id": account.new_id("src_", 12), **s} for s in sources)
            known = {p["id"] for p in thread.personas_used}
            thread.personas_used.extend(p for p in personas_used if p["id"] not in known)
            thread.credits_used += cost
            thread.updated_at = now
            if MAVE_COST_RANGES[complexity] > MAVE_COST_RANGES[thread.complexity]:
                thread.complexity = complexity
        account.add_tokens(self.name, count_tokens(message), count_tokens(content))
        return {"id": msg_id, "object": "mave_message", "thread_id": thread.id, "role": "assistant",
                "content": content, "sources": sources, "personas_used": personas_used,
                "validation": validation, "complexity": complexity,
                "usage": {"credits_used": cost}, "created_at": now, "sandbox": True}


class MaveThreads(Resource):
    name = "/mave/threads"

    async def get(self, request: Request) -> Response:
        workspace = request.query_params.get("workspace_id")
        search = (request.query_params.get("search") or "").lower()
        with self.account.lock:
            threads = list(reversed(self.account.threads.values()))  # newest first
            items = [_summary(t) for t in threads
                     if (not workspace or t.workspace_id == workspace)
                     and (not search or search in t.title.lower())]
        return JSONResponse(page(request, items))


class MaveThreadById(Resource):
    name = "/mave/threads/{id}"

    def _thread(self, request: Request) -> Thread:
        ident = request.path_params["thread_id"]
        thread = self.account.threads.get(ident)
        if thread is None:
            raise not_found("mave thread", ident)
        return thread

    async def get(self, request: Request) -> Response:
        with self.account.lock:
            thread = self._thread(request)
            out = {k: v for k, v in _summary(thread).items() if k != "message_count"}
            out.update(messages=list(thread.messages), sources=list(thread.sources),
                       personas_used=list(thread.personas_used))
        return JSONResponse(out)

    async def patch(self, request: Request) -> Response:
        body = await read_body(request)
        title = body.get("title")
        if title is None:
            raise missing("title")
        if not isinstance(title, str) or not 1 <= len(title) <= 100:
            raise invalid("title", "must be a string of 1 to 100 characters")
        with self.account.lock:
            thread = self._thread(request)
            thread.title, thread.updated_at = title, now_iso()
            return JSONResponse(_summary(thread))

    async def delete(self, request: Request) -> Response:
        with self.account.lock:
            thread = self._thread(request)
            del self.account.threads[thread.id]
        return JSONResponse({"id": thread.id, "object": "mave_thread", "deleted": True})


def _complexity(message: str) -> str:
    lowered = message.lower()
    markers = sum(1 for w in _MARKERS if w in lowered)
    words = len(message.split())
    if words > 80 or markers >= 4:
        return "STRATEGIC"
    if words > 40 or markers >= 2:
        return "COMPLEX"
    if words > 15 or markers >= 1:
        return "MODERATE"
    return "SIMPLE"


def _cost(message: str, complexity: str, follow_up: bool) -> int:
    low, high = MAVE_COST_RANGES[complexity]
    cost = low + int(digest("mave-cost", message)[:8], 16) % (high - low + 1)
    if follow_up:
        cost = max(MAVE_COST_RANGES["SIMPLE"][0], round(cost * MAVE_FOLLOW_UP_DISCOUNT))
    return cost


def _voices(message: str, people: list[Persona]) -> list[Persona]:
    """The personas whose perspectives a brief includes: those it names, then the most relevant."""
    lowered = message.lower()
    named = [p for p in people if p.name.lower() in lowered]
    ranked = sorted(people, key=lambda p: (-sum(w in lowered for w in p.interests),
                                           digest("mave-persona", message, p.id)))
    chosen = named + [p for p in ranked if p not in named]
    return chosen[:max(2, min(3, len(named)))]


def _summary(thread: Thread) -> dict[str, Any]:
    return {"id": thread.id, "object": "mave_thread", "title": thread.title,
            "current_phase": thread.current_phase, "complexity": thread.complexity,
            "credits_used": thread.credits_used, "workspace_id": thread.workspace_id,
            "message_count": len(thread.messages), "created_at": thread.created_at,
            "updated_at": thread.updated_at}


async def _events(out: dict[str, Any]) -> AsyncIterator[str]:
    # §1.7: event types content/sources/validation/done; framing NOT FOUND, so each event has an
    # `event:` line and repeats its type in the JSON for clients that read data lines only.
    for piece in pieces(out["content"], 8):
        yield sse({"type": "content", "content": piece}, event="content")
    yield sse({"type": "sources", "sources": out["sources"]}, event="sources")
    yield sse({"type": "validation", "validation": out["validation"]}, event="validation")
    yield sse({"type": "done", **out}, event="done")
    yield sse("[DONE]")
