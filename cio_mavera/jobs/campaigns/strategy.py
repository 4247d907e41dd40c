"""Job 1 Mavera step: ask the Mave agent for a diagnosis and a messaging strategy."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.credits import SKIPPABLE
from cio_mavera.pii import assert_no_pii


@dataclass
class Strategy:
    """Mave's diagnosis and messaging strategy (empty `content` when the call was skipped)."""

    content: str
    key_points: list[str]
    sources: list[dict[str, Any]]
    thread_id: str | None
    credits: int
    cached: bool = False
    skipped: str | None = None


def strategy_prompt(summary: Mapping[str, Any]) -> str:
    """The message asking Mave for a diagnosis and a strategy, with the summary as JSON."""
    return (
        "You are advising the lifecycle marketing team of a product that sends email, push and SMS "
        "campaigns through Customer.io. The JSON below summarises the last "
        f"{summary['window']['start']} to {summary['window']['end_exclusive']} of message metrics "
        "(no customer data). Each underperformer is significantly worse than the rest of its "
        "channel on the listed rates.\n"
        "1. Diagnose the most likely reasons each underperformer falls short, from its copy and "
        "rates.\n"
        "2. Recommend a messaging strategy: three to five principles, and for each underperformer "
        "a direction for a new subject line, preheader and body.\n"
        "3. Say what to A/B test first and which metric decides it.\n\n"
        "Summary:\n" + json.dumps(summary, indent=1, sort_keys=True)
    )


def ask_mave_for_strategy(run: RunContext, summary: Mapping[str, Any]) -> Strategy:
    """Ask the Mave agent for a diagnosis and strategy; a refused call returns an empty Strategy."""
    if not summary.get("underperformers"):
        return Strategy("", [], [], None, 0, skipped="no underperformers, so nothing to diagnose")
    message = strategy_prompt(summary)
    assert_no_pii(message, what="the Mave strategy request")
    try:
        answer = run.mavera.mave.chat(message)
    except SKIPPABLE as exc:
        run.skip("strategy", "Mave diagnosis and strategy", exc)
        return Strategy("", [], [], None, 0, skipped=str(exc))
    return Strategy(answer.content, strategy_key_points(answer.content), list(answer.sources),
                    answer.thread_id, int(answer.credits), bool(getattr(answer, "cached", False)))


_HEADING = re.compile(r"^\s*(?:#+\s*|\*\*)?(recommend|strateg|principle|next step|action)", re.I)
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)")


def strategy_key_points(text: str, limit: int = 3, max_chars: int = 160) -> list[str]:
    """Up to `limit` short points from a strategy: the list items under a recommendations-like heading,
    else the first list items, else the first sentences."""
    lines = (text or "").splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if _HEADING.match(line)), None)
    candidates = lines[start:] if start is not None else lines
    points = [_ITEM.match(line).group(1) for line in candidates if _ITEM.match(line)]
    if not points and start is not None:
        points = [_ITEM.match(line).group(1) for line in lines if _ITEM.match(line)]
    if not points:
        points = re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text or "").strip())
    cleaned = []
    for point in points:
        point = re.sub(r"\*\*|__|`", "", point).replace("[sandbox]", "").strip()
        if point:
            cleaned.append(point if len(point) <= max_chars else point[:max_chars - 1].rsplit(" ", 1)[0] + "…")
    return cleaned[:limit]


