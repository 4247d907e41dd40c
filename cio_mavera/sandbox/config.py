"""What a sandbox server is configured with: its knobs, and the prefixes each API is served under."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .workspace.world import World

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
    end: dt.datetime | dt.date | None = None  # when the workspace's history stops (None: this hour)
    world: World = field(default_factory=World)  # how messy the data is (realistic by default)
    latency_ms: float = 0.0
    app_rps: int = 10
    fault_rate: float = 0.0  # share of API requests answered with a random 500/503
    force_429_rate: float = 0.0  # share of App API requests answered 429 regardless of rate
    mavera_credits: int = 1_000_000
    mavera_rpm: int = 600  # the sandbox key's tier; clients default to the Starter tier (60)
    region: str = "us"
    request_log_size: int = 2000
