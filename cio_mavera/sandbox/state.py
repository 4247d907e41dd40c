"""Shared state of one sandbox server: its configuration, the keys it hands out, stats and request log.

The Customer.io and Mavera halves of the sandbox keep their own state in `state.cio` and
`state.mavera` (set by their route modules); this module holds what both share.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

# Prefixes under which each API is served; the URLs handed out in /__sandbox__/env end with them.
CIO_APP_PREFIX = "/cio/app"
CIO_APP_EU_PREFIX = "/cio-eu/app"
CIO_TRACK_PREFIX = "/cio/track"
CIO_TRACK_EU_PREFIX = "/cio-eu/track"
MAVERA_PREFIX = "/mavera/api/v1"
ADMIN_PREFIX = "/__sandbox__"

# Every sandbox answer says it is sandbox output: this header on every response, and the Mavera
# half puts it in generated text as well.
SANDBOX_HEADER = "X-Cio-Mavera-Sandbox"


@dataclass(frozen=True)
class SandboxConfig:
    """Knobs of `sandbox serve` (and of the in-process sandbox)."""

    seed: int = 7
    customers: int = 5000
    latency_ms: float = 0.0
    app_rps: int = 10
    fault_rate: float = 0.0  # share of API requests answered with a random 500/503
    force_429_rate: float = 0.0  # share of App API requests answered 429 regardless of rate
    mavera_credits: int = 1_000_000
    mavera_rpm: int = 600  # the sandbox key's tier; clients default to the Starter tier (60)
    region: str = "us"
    request_log_size: int = 2000


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
        self._workspace = None
        # The two halves attach their own state objects here.
        self.cio: Any = None
        self.mavera: Any = None

    @property
    def workspace(self):
        """The synthetic workspace, generated on first use (1M customers take a few seconds)."""
        with self.lock:
            if self._workspace is None:
                from .workspace import generate_workspace

                self._workspace = generate_workspace(self.config.seed, self.config.customers)
            return self._workspace

    def env(self, base_url: str) -> dict[str, str]:
        """The environment a client needs to talk to this sandbox at `base_url`."""
        region_prefix = "/cio-eu" if self.config.region == "eu" else "/cio"
        return {
            "CIO_APP_URL": f"{base_url}{region_prefix}/app",
            "CIO_TRACK_URL": f"{base_url}{region_prefix}/track",
            "MAVERA_BASE_URL": f"{base_url}{MAVERA_PREFIX}",
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
            for half in (self.cio, self.mavera):
                if half is not None and hasattr(half, "reset"):
                    half.reset()
