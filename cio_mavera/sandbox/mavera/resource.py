"""The base of every Mavera route: one HTTPEndpoint per path, with the account and credits at hand."""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.datastructures import Headers
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import Response

from ..state import SandboxState
from .base_personas import Persona
from .errors import MaveraHTTPError, missing
from .state import MaveraState

# §3/§4 call persona_id "Required" while the guides say it is optional; the sandbox is lenient.
REQUIRE_PERSONA_ID = False
# Concurrency caps (§1.4): the status/code returned when a cap is hit is NOT FOUND; the sandbox
# answers like the per-minute limit.
CONCURRENCY_STATUS = 429
CONCURRENCY_CODE = "rate_limit_exceeded"
CONCURRENCY_RETRY_AFTER_S = 5


class Resource(HTTPEndpoint):
    """A Mavera resource: a method per HTTP verb it supports; any other verb gets a 405 envelope."""

    name: ClassVar[str]  # the endpoint GET /usage counts this resource's requests under

    @property
    def sandbox(self) -> SandboxState:
        return self.scope["app"].state.sandbox

    @property
    def account(self) -> MaveraState:
        return self.sandbox.mavera

    async def method_not_allowed(self, request: Request) -> Response:
        raise MaveraHTTPError(405, "method_not_allowed",
                              f"{request.method} is not supported on {self.name}.")

    def persona_for(self, body: dict[str, Any], required: bool = REQUIRE_PERSONA_ID) -> Persona | None:
        """The persona named by `persona_id` (None when absent and not required)."""
        ident = body.get("persona_id")
        if ident is None:
            if required:
                raise missing("persona_id")
            return None
        persona = self.account.persona(ident) if isinstance(ident, str) else None
        if persona is None:
            raise MaveraHTTPError(400, "invalid_persona", f"Unknown persona_id '{ident}'.", "persona_id")
        return persona

    @property
    def key(self) -> str:
        """The API key this request was sent with (the gate has checked it)."""
        header = Headers(scope=self.scope).get("authorization", "")
        return header.partition(" ")[2].strip()

    def charge(self, endpoint: str, credits: int) -> None:
        """Charge `credits` or raise 402 (callers hold `account.lock` around check-and-create)."""
        if not self.account.can_afford(credits):
            # Names the key, as real error pages sometimes do: clients must redact it.
            raise MaveraHTTPError(
                402, "credits_exhausted",
                f"Insufficient credits on API key {self.key}: this call needs {credits}, "
                f"{self.account.balance} remain.")
        self.account.charge(endpoint, credits)
        self.sandbox.stats.charge(credits)

    def concurrency_error(self, message: str) -> MaveraHTTPError:
        """The answer to a request over a concurrency cap (counted as a 429 in the stats)."""
        self.sandbox.stats.count_429("mavera")
        return MaveraHTTPError(CONCURRENCY_STATUS, CONCURRENCY_CODE, message,
                               headers={"Retry-After": str(CONCURRENCY_RETRY_AFTER_S)})
