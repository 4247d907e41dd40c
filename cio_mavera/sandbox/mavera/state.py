"""The Mavera sandbox's account: credits, rate window, custom personas, threads, generations, focus groups."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import SandboxConfig
from .base_personas import BASE_BY_ID, BASE_PERSONAS, Persona
from .params import DEFAULT_WORKSPACE_ID

RATE_WINDOW_S = 60.0  # sliding window of mavera-api.md §1.4
_WORKSPACE_CREATED = "2025-01-06T09:00:00Z"


def workspace(ident: str, name: str, kind: str, role: str) -> dict[str, Any]:
    """A workspace object in the documented shape (§9.1)."""
    return {"id": ident, "object": "workspace", "name": name, "image": None, "type": kind,
            "role": role, "is_owner": role == "owner", "member_count": 1 if role == "owner" else 4,
            "project_count": 0, "thread_count": 0, "budget_alert": None, "usage_limit": None,
            "billing_email": None, "created_at": _WORKSPACE_CREATED,
            "updated_at": _WORKSPACE_CREATED}


def default_workspaces() -> list[dict[str, Any]]:
    """The sandbox key's workspaces: its own (the default one) and a client's it was invited to.

    Two, as an agency's key would have, so a client cannot get away with guessing which one a
    focus group belongs to.
    """
    return [workspace(DEFAULT_WORKSPACE_ID, "Sandbox workspace", "user", "owner"),
            workspace(f"{DEFAULT_WORKSPACE_ID}_client", "Sandbox client work", "marketing_agency",
                      "manager")]


@dataclass
class RateDecision:
    """Outcome of one request against the sliding window, with the headers to send."""

    allowed: bool
    headers: dict[str, str]
    retry_after: int = 0


class SlidingWindow:
    """Per-key sliding 60 s request window (§1.4); rejected requests do not count."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.clock = clock  # tests freeze it to count admissions without depending on timing
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def _prune(self, key: str, now: float) -> deque[float]:
        hits = self._hits[key]
        while hits and hits[0] <= now - RATE_WINDOW_S:
            hits.popleft()
        return hits

    def _headers(self, hits: deque[float], now: float) -> dict[str, str]:
        reset = hits[0] + RATE_WINDOW_S if hits else now + RATE_WINDOW_S
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(max(0, self.limit - len(hits))),
                "X-RateLimit-Reset": str(math.ceil(reset))}

    def hit(self, key: str, now: float | None = None) -> RateDecision:
        """Count a request by `key` if the window allows it."""
        now = self.clock() if now is None else now
        hits = self._prune(key, now)
        if len(hits) >= self.limit:
            retry = max(1, math.ceil(hits[0] + RATE_WINDOW_S - now))
            headers = {**self._headers(hits, now), "Retry-After": str(retry)}
            return RateDecision(False, headers, retry)
        hits.append(now)
        return RateDecision(True, self._headers(hits, now))

    def peek(self, key: str | None, now: float | None = None) -> dict[str, str]:
        """Headers for a request that is not counted (e.g. one rejected by auth)."""
        now = self.clock() if now is None else now
        hits = self._prune(key, now) if key is not None else deque()
        return self._headers(hits, now)

    def clear(self) -> None:
        self._hits.clear()


@dataclass
class EndpointUsage:
    """Requests, tokens and credits per endpoint (for GET /usage)."""

    requests: int = 0
    errors: int = 0
    credits_used: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Thread:
    """A Mave thread with its messages and the sources its answers cited."""

    id: str
    title: str
    workspace_id: str
    created_at: str
    updated_at: str
    complexity: str = "SIMPLE"
    current_phase: str = "VALIDATION"
    credits_used: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    personas_used: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FocusGroup:
    """An asynchronous focus group; its status advances with each GET (not with wall time)."""

    id: str
    body: dict[str, Any]
    result: dict[str, Any]
    credits: int
    created_at: str
    polls: int = 0
    status: str = "pending"
    updated_at: str = ""
    completed_at: str | None = None


class MaveraState:
    """The sandbox's Mavera account: one key, a credit balance and the resources it created.

    `SandboxState.mavera` holds one; `reset()` restores a fresh account.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        # Knobs tests may change (not part of SandboxConfig because only the Mavera half uses them).
        self.mave_latency_s = 0.0  # simulated Mave thinking time, makes the concurrency cap reachable
        # Cleared, admitted Mave requests wait until it is set again: a test holds them in flight
        # to reach the concurrency cap without depending on how long anything takes.
        self.mave_open = threading.Event()
        self.mave_open.set()
        self.focus_group_polls_to_complete = 3  # GETs until completed: processing, processing, completed
        self.reset()

    def reset(self) -> None:
        """Restore the starting balance and forget every created resource and rate window."""
        with self.lock:
            self.balance = int(self.config.mavera_credits)
            self.credits_used = 0
            self.rate = SlidingWindow(int(self.config.mavera_rpm))
            self.custom_personas: dict[str, Persona] = {}
            self.threads: dict[str, Thread] = {}
            self.generations: dict[str, dict[str, Any]] = {}
            self.focus_groups: dict[str, FocusGroup] = {}
            # The key's workspaces (a knob: tests may replace the list).
            self.workspaces: list[dict[str, Any]] = default_workspaces()
            self.usage: dict[str, EndpointUsage] = defaultdict(EndpointUsage)
            self.mave_in_flight = 0
            self._counter = 0

    # ------------------------------------------------------------ ids and credits

    def new_id(self, prefix: str, length: int = 24) -> str:
        """A fresh id: deterministic in the order resources are created since the last reset."""
        with self.lock:
            self._counter += 1
            seed = f"{self.config.seed}:{prefix}:{self._counter}"
        return prefix + hashlib.sha256(seed.encode()).hexdigest()[:length]

    def count_request(self, endpoint: str, status: int) -> None:
        """Count one answered request (and its error, if it was one) for GET /usage."""
        with self.lock:
            usage = self.usage[endpoint]
            usage.requests += 1
            if status >= 400:
                usage.errors += 1

    def add_tokens(self, endpoint: str, prompt: int, completion: int) -> None:
        """Count the tokens of one answered call for GET /usage."""
        with self.lock:
            self.usage[endpoint].prompt_tokens += prompt
            self.usage[endpoint].completion_tokens += completion

    def can_afford(self, credits: int) -> bool:
        with self.lock:
            return self.balance >= credits

    def charge(self, endpoint: str, credits: int) -> None:
        """Take `credits` off the balance (callers check `can_afford` first, under `lock`)."""
        with self.lock:
            self.balance -= credits
            self.credits_used += credits
            self.usage[endpoint].credits_used += credits

    # ------------------------------------------------------------ personas

    def persona(self, persona_id: str) -> Persona | None:
        """A base or custom persona by id."""
        with self.lock:
            return BASE_BY_ID.get(persona_id) or self.custom_personas.get(persona_id)

    def all_personas(self) -> list[Persona]:
        """Base personas first, then custom ones in creation order."""
        with self.lock:
            return [*BASE_PERSONAS, *self.custom_personas.values()]

    def custom_by_name(self, name: str) -> Persona | None:
        wanted = name.strip().lower()
        with self.lock:
            return next((p for p in self.custom_personas.values() if p.name.lower() == wanted), None)

    def active_focus_groups(self) -> int:
        """Focus groups still generating (counts against the concurrency cap)."""
        with self.lock:
            return sum(1 for g in self.focus_groups.values() if g.status != "completed")
