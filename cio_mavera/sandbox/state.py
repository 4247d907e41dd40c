"""Shared state of one sandbox server: its keys, stats, request log, faults, workspace and each API's state."""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .config import (
    CIO_APP_EU_PREFIX,
    CIO_APP_PREFIX,
    CIO_TRACK_EU_PREFIX,
    CIO_TRACK_PREFIX,
    MAVERA_PREFIX,
    SandboxConfig,
)
from .customerio.state import CioState
from .mavera.params import DEFAULT_WORKSPACE_ID
from .mavera.state import MaveraState
from .workspace import Workspace, generate_workspace


def _key(seed: int, label: str, length: int = 32) -> str:
    return hashlib.sha256(f"cio-mavera-sandbox:{seed}:{label}".encode()).hexdigest()[:length]


@dataclass
class Fault:
    """A scripted fault: answer the next `count` requests under `prefix` with `status`."""

    prefix: str
    status: int
    count: int
    retry_after: int | None = None
    method: str | None = None  # only requests with this method, when set


@dataclass
class SandboxStats:
    """Counters the admin /stats route reports."""

    requests: Counter = field(default_factory=Counter)
    rate_limited: Counter = field(default_factory=Counter)
    faults: int = 0
    credits_charged: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, route: str) -> None:
        with self.lock:
            self.requests[route] += 1

    def count_429(self, api: str) -> None:
        with self.lock:
            self.rate_limited[api] += 1

    def charge(self, credits: int) -> None:
        with self.lock:
            self.credits_charged += credits

    def as_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": dict(self.requests),
                "requests_total": sum(self.requests.values()),
                "rate_limited": dict(self.rate_limited),
                "rate_limited_total": sum(self.rate_limited.values()),
                "faults_injected": self.faults,
                "credits_charged": self.credits_charged,
            }


# Numbers, hex ids, prefixed ids with a digit (chatcmpl_1a2b, mave_thread_abc123), long tokens;
# not words like customer_count.
_ID_SEGMENT = re.compile(
    r"/(?:\d+|[0-9a-f]{8,}|[A-Za-z]+_[A-Za-z0-9_]*\d[A-Za-z0-9_]*|[A-Za-z0-9-]{20,})(?=/|$)")


def route_template(path: str) -> str:
    """`path` with id-like segments replaced by {id}, so stats group requests by endpoint."""
    return _ID_SEGMENT.sub("/{id}", path)


class SandboxState:
    """Everything one sandbox server knows; thread-safe where routes share it."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        seed = self.config.seed
        self.site_id = f"sbx{_key(seed, 'site', 12)}"
        self.keys = {
            "CIO_SITE_ID": self.site_id,
            "CIO_API_KEY": f"sbx_track_{_key(seed, 'track')}",
            "CIO_APP_KEY": f"sbx_app_{_key(seed, 'app')}",
            "MAVERA_API_KEY": f"mvra_test_{_key(seed, 'mavera')}",
        }
        self.rng = random.Random(seed)
        self.stats = SandboxStats()
        self.request_log: deque[dict[str, Any]] = deque(maxlen=self.config.request_log_size)
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._workspace: Workspace | None = None
        self.cio = CioState(self.config.app_rps, seed)
        self.mavera = MaveraState(self.config)

    @property
    def workspace(self) -> Workspace:
        """The synthetic workspace, generated on first use (1M customers take a few seconds)."""
        with self.lock:
            if self._workspace is None:
                self._workspace = generate_workspace(self.config.seed, self.config.customers,
                                                     end=self.config.end, world=self.config.world)
            return self._workspace

    def env(self, base_url: str) -> dict[str, str]:
        """The environment a client needs to talk to this sandbox at `base_url`."""
        eu = self.config.region == "eu"
        return {
            "CIO_APP_URL": f"{base_url}{CIO_APP_EU_PREFIX if eu else CIO_APP_PREFIX}",
            "CIO_TRACK_URL": f"{base_url}{CIO_TRACK_EU_PREFIX if eu else CIO_TRACK_PREFIX}",
            "MAVERA_BASE_URL": f"{base_url}{MAVERA_PREFIX}",
            # Focus groups need a workspace; the key has two, so the sandbox names its own.
            "MAVERA_WORKSPACE_ID": DEFAULT_WORKSPACE_ID,
            **self.keys,
        }

    def truth(self) -> dict[str, Any]:
        """What the generator planted (tests only; notebooks never read it)."""
        return self.workspace.truth

    def take_fault(self, path: str, method: str = "GET") -> Fault | None:
        """The scripted or random fault to answer this request with, if any."""
        with self.lock:
            for fault in self.faults:
                if (path.startswith(fault.prefix) and fault.count > 0
                        and fault.method in (None, method.upper())):
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    self.stats.faults += 1
                    return fault
            if self.config.fault_rate and self.rng.random() < self.config.fault_rate:
                self.stats.faults += 1
                return Fault(prefix=path, status=self.rng.choice([500, 503]), count=1)
        return None

    def log_request(self, method: str, path: str, body: Any) -> None:
        self.request_log.append({"method": method, "path": path, "json": body})

    def reset(self) -> None:
        """Forget stats, request log, faults and the per-API state (the workspace stays)."""
        with self.lock:
            self.stats = SandboxStats()
            self.request_log.clear()
            self.faults.clear()
            self.cio.reset()
            self.mavera.reset()


def sandbox_of(request: Request) -> SandboxState:
    """The sandbox serving `request` (each of its apps keeps it in `app.state.sandbox`)."""
    return request.app.state.sandbox
