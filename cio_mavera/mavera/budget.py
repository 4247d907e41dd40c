"""A run's credit budget: reserve each call's worst case before sending, settle the actual cost after.

Reserving the worst case (not the typical cost) is what makes the guarantee hold: a run can never
spend more than `max_credits`, even with calls in flight on several threads. A call that could
overrun is refused before it is sent, and recorded in `.skipped` so the report can say what it left
out.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import BudgetExceeded

# Worst-case credits per call, from the reference's cost table (upper ends of the documented ranges).
# Mave: feature page says up to 75 for "strategic" questions; focus groups: 50-200 officially, "500+"
# in a secondary source (UNVERIFIED) -- raise it if your groups are large. Persona updates: cost NOT
# FOUND in the docs, assumed free; the ledger records whatever the server reports.
DEFAULT_WORST_CASE: dict[str, int] = {
    "persona": 300,
    "persona_update": 0,
    "mave": 75,
    "focus_group": 200,
    "chat": 5,
    "responses": 5,
    "generation": 30,
}


@dataclass(frozen=True)
class Reservation:
    """Credits held for one call until it is settled or released."""

    kind: str
    amount: int
    what: str
    id: int


@dataclass
class Skipped:
    """A call the budget refused, for the report's "not done" list."""

    kind: str
    what: str
    needed: int
    remaining: int
    reason: str
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


class CreditBudget:
    """At most `max_credits` for a run, enforced before each call is sent (thread-safe)."""

    def __init__(self, max_credits: int, worst_case: Mapping[str, int] | None = None) -> None:
        if max_credits < 0:
            raise ValueError("max_credits must be >= 0")
        self.max_credits = int(max_credits)
        self.worst_case = {**DEFAULT_WORST_CASE, **(worst_case or {})}
        self.spent = 0
        self.reserved = 0
        self.skipped: list[Skipped] = []
        self._next_id = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        """Credits neither spent nor held for calls in flight."""
        with self._lock:
            return self.max_credits - self.spent - self.reserved

    def cost(self, kind: str, multiplier: int = 1) -> int:
        """The worst-case credits of one call of `kind` (times `multiplier`)."""
        if kind not in self.worst_case:
            raise KeyError(f"no worst-case cost for {kind!r}; pass worst_case={{{kind!r}: N}}")
        return self.worst_case[kind] * max(1, multiplier)

    def reserve(self, kind: str, what: str = "", *, multiplier: int = 1) -> Reservation:
        """Hold the worst case of a `kind` call, or raise `BudgetExceeded` (and record the skip)."""
        needed = self.cost(kind, multiplier)
        with self._lock:
            remaining = self.max_credits - self.spent - self.reserved
            if needed > remaining:
                reason = (f"{kind} call could cost up to {needed} credits but only {remaining} of "
                          f"max_credits={self.max_credits} remain")
                self.skipped.append(Skipped(kind, what, needed, remaining, reason))
                raise BudgetExceeded(
                    f"refused before sending: {reason}" + (f" ({what})" if what else "") +
                    "; raise max_credits or lower the worst case for this kind "
                    "(CreditBudget(worst_case=...))", needed=needed, remaining=remaining)
            self.reserved += needed
            self._next_id += 1
            return Reservation(kind, needed, what, self._next_id)

    def settle(self, reservation: Reservation, actual: int) -> None:
        """Replace a reservation by what the call actually cost."""
        with self._lock:
            self.reserved -= reservation.amount
            self.spent += int(actual)

    def charge(self, actual: int) -> None:
        """Count credits spent without a reservation (a charge discovered after the fact)."""
        with self._lock:
            self.spent += int(actual)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation for a call that was not charged (it failed before the server acted)."""
        self.settle(reservation, 0)

    def summary(self) -> dict[str, object]:
        """Spent, remaining and skipped calls, for results.json and the report."""
        with self._lock:
            return {
                "max_credits": self.max_credits,
                "spent": self.spent,
                "reserved": self.reserved,
                "remaining": self.max_credits - self.spent - self.reserved,
                "skipped": [{"kind": s.kind, "what": s.what, "needed": s.needed,
                             "remaining": s.remaining, "reason": s.reason} for s in self.skipped],
            }
