"""The Mavera client: resource namespaces over one metered core, in the manner of the openai SDK.

    client = MaveraClient(connection, run_id="...", budget=CreditBudget(500))
    client.chat.create("Rate this subject line", persona_id=persona["id"])
    client.personas.ensure("Bargain Hunters", description="...")

Every namespace sends through the same `MeteredCore` (PII guard, response cache, credit budget,
the shared HTTP layer with tier window, header gate and retries, then the credits ledger), so an
endpoint method is "build the body, parse the answer".
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from ..connect import Connection
from ..errors import ConfigError
from ..http import HttpClient
from ..known_people import WorkspacePeople
from .budget import CreditBudget
from .core import RETRY, MeteredCore
from .errors import SERVICE, mavera_error
from .ledger import CreditsLedger
from .listing_cache import ListingCache
from .ratelimit import GateTransport, limits_for
from .resources import (
    Chat,
    FocusGroups,
    Generations,
    Mave,
    Personas,
    Responses,
    Usage,
    Workspaces,
)
from .response_cache import ResponseCache

# Mave answers take 5-30 s, first answers up to 90 s (quickstart).
DEFAULT_TIMEOUT_S = 120.0


def _new_run_id() -> str:
    return f"adhoc-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


class MaveraClient(MeteredCore):
    """A Mavera API client for one run: cached, budgeted, rate-limited, and accounted in the ledger.

    Its PII guard checks every payload against `people` (default: the customers this connection's
    cache holds, rebuilt when a pull changes it); a run context passes its own so it is built once.

    Namespaces: `chat`, `responses`, `personas`, `mave`, `generations`, `focus_groups`, `usage`,
    `workspaces`.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        run_id: str | None = None,
        job: str | None = None,
        budget: CreditBudget | None = None,
        use_cache: bool = True,
        refresh: bool = False,
        rpm: int | None = None,
        ledger: CreditsLedger | None = None,
        pii_guard: bool = True,
        people: WorkspacePeople | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = 32,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = connection.settings
        if not settings.mavera_key:
            raise ConfigError("MAVERA_API_KEY is not set; put it in .env (see .env.example) or use "
                              "CIO_MAVERA_MODE=sandbox to run against the local sandbox")
        key = settings.mavera_key.reveal()
        self.connection = connection
        self.rpm = int(rpm or settings.mavera_rpm)
        limits = limits_for(key, self.rpm, data_dir=settings.data_dir, redis_url=settings.redis_url)
        pool = httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections)
        http = HttpClient(
            service=SERVICE,
            base_url=settings.mavera_url,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            secrets=settings.secrets(),
            limiter=limits.limiter,
            retry=RETRY,
            timeout_s=timeout_s,
            max_connections=max_connections,
            error_factory=mavera_error,
            transport=GateTransport(transport or httpx.HTTPTransport(limits=pool), limits.gate),
        )
        super().__init__(
            http=http,
            limits=limits,
            cache=ResponseCache(connection.cache_dir / "mavera"),
            listings=ListingCache(connection.cache_dir / "mavera-listings"),
            ledger=ledger or CreditsLedger(settings.data_dir, connection.mode),
            locks_dir=connection.cache_dir / "mavera" / "locks",
            base_url=settings.mavera_url,
            run_id=run_id or _new_run_id(),
            job=job or "",
            budget=budget,
            use_cache=use_cache,
            refresh=refresh,
            pii_guard=pii_guard,
            workspace_id=settings.mavera_workspace_id,
            # Every payload is checked against the people this connection's cache has pulled.
            people=people or WorkspacePeople(connection.cache_dir),
        )
        self.chat = Chat(self)
        self.responses = Responses(self)
        self.personas = Personas(self)
        self.mave = Mave(self)
        self.generations = Generations(self)
        self.focus_groups = FocusGroups(self)
        self.usage = Usage(self)
        self.workspaces = Workspaces(self)

    def __enter__(self) -> MaveraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
