"""One line a run ends with on the command line: its headline finding and the credits it spent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def headline(job: str, results: Mapping[str, Any]) -> str:
    """The finding that matters most in `results` (a results.json), in one line."""
    finding = {
        "campaign-messaging": _campaigns,
        "attribute-personas": _audiences,
        "retention-research": _retention,
    }.get(job, lambda _: "done")(results)
    return f"{finding}; {int(results.get('credits_spent') or 0):,} Mavera credits spent"


def _campaigns(results: Mapping[str, Any]) -> str:
    flagged = results.get("flagged_underperformers") or []
    messages = {f.get("action_id") for f in flagged}
    tested = results.get("messages_tested")
    text = (f"{len(messages)} of {tested} messages underperform their channel" if tested is not None
            else f"{len(messages)} messages underperform their channel")
    variations = results.get("ranked_variations") or []
    return text + (f"; {len(variations)} new variations ranked by personas" if variations else "")


def _audiences(results: Mapping[str, Any]) -> str:
    clusters = results.get("clusters") or []
    if not clusters:
        return "no audience clusters"
    created = sum(1 for c in clusters if c.get("persona_status") == "created")
    return f"{len(clusters)} audience clusters, {created} new Mavera persona(s)"


def _retention(results: Mapping[str, Any]) -> str:
    triggers = results.get("triggers") or []
    if not triggers:
        return "no spike in unsubscribes, complaints or churn signals"
    top = triggers[0]
    subject = (f"campaign {top.get('campaign_name') or ''} (#{top.get('campaign_id')})".replace("  ", " ")
               if top.get("kind") == "campaign" else f"audience {top.get('cluster_name')}")
    return f"{len(triggers)} spike(s); strongest: {subject}"
