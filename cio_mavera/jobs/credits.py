"""What a run did not do, and what it spent: skipped Mavera calls and the report's credits section.

Every job records a call it could not make (over budget, no credits left, a focus group that timed
out) as a `SkippedStep` and carries on, so the report can say what it left out. The three reports
render their credits section with the same `credits_section`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cio_mavera.errors import BudgetExceeded, CreditsExhausted
from cio_mavera.markup import md
from cio_mavera.mavera.errors import FocusGroupTimeout

# Failures that mean "this call was not made (or not finished)", not "the run is broken".
SKIPPABLE: tuple[type[Exception], ...] = (BudgetExceeded, CreditsExhausted, FocusGroupTimeout)


@dataclass(frozen=True)
class SkippedStep:
    """A Mavera call the run did not make, and why (budget, credits, timeout)."""

    step: str
    what: str
    reason: str


def skip_reason(exc: Exception) -> str:
    """A short, reader-facing reason for a call that was not made."""
    if isinstance(exc, BudgetExceeded):
        return f"over budget: could cost up to {exc.needed} credits, {exc.remaining} of max_credits left"
    if isinstance(exc, CreditsExhausted):
        return "Mavera answered 402: no credits left on the account or workspace budget"
    return str(exc)


def credits_section(budget_summary: Mapping[str, Any], skipped: Sequence[SkippedStep], *,
                    bought: str = "", notes: Sequence[str] = (),
                    cache_hits: int | None = None) -> str:
    """Markdown: credits spent of the budget, what they bought, cache use, and every skipped call."""
    s = budget_summary
    first = (f"Spent **{s['spent']} of {s['max_credits']} credits** this run"
             f"{(' ' + bought) if bought else ''} ({s['remaining']} left).")
    if cache_hits:
        first += f" {cache_hits} Mavera answer(s) came from the local cache at no cost."
    lines = [" ".join([first, *notes])]
    if skipped:
        lines += ["", f"**{len(skipped)} call(s) skipped**, so parts of this report are missing:", ""]
        lines += [f"- {md(item.step)}: {md(item.what)} — {md(item.reason)}" for item in skipped]
    else:
        lines.append("Nothing was skipped.")
    return "\n".join(lines)
