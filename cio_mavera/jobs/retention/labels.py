"""Job 3's names for readers: one spelling of each campaign, audience, spike, channel and window.

These return plain text; each sink escapes it its own way (`markup.md` in Markdown,
`report_parts.table` and `summary_block` in HTML, `markup.plain_label` in charts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from cio_mavera.jobs import report_parts as rp

# Customer.io calls SMS "twilio" in places; the report says "SMS" everywhere.
CHANNEL_NAMES = {"email": "email", "push": "push", "twilio": "SMS", "sms": "SMS", "whatsapp": "WhatsApp",
                 "in_app": "in-app", "webhook": "webhook", "slack": "Slack"}
METRIC_NAMES = {"sent": "Sent", "delivered": "Delivered", "opened": "Opened", "clicked": "Clicked",
                "converted": "Converted", "unsubscribed": "Unsubscribes", "spammed": "Spam complaints",
                "bounced": "Bounces"}
SIGNAL_WORDS = {"opt_out": "opt-outs", "churn": "churn signals"}


def channel_name(channel: Any) -> str:
    """The reader's name of a channel ("twilio" -> "SMS")."""
    return CHANNEL_NAMES.get(str(channel), str(channel))


def campaign_label(names: Mapping[int, str], campaign_id: Any) -> str:
    """"Mobile app activation (#45)": a campaign's name beside its id."""
    if campaign_id is None or pd.isna(campaign_id):
        return "no campaign"
    name = str(names.get(int(campaign_id)) or "").strip() or "campaign"
    return f"{name} (#{int(campaign_id)})"


def audience_label(cluster_name: Any) -> str:
    """An audience cluster's one name (job 2's), or "all recipients"."""
    if cluster_name is None or (isinstance(cluster_name, float) and pd.isna(cluster_name)):
        return "all recipients"
    return str(cluster_name)


def audience_names(events: pd.DataFrame) -> dict[int, str]:
    """Each audience cluster in an enriched event log and its one name (job 2's `cluster_name`)."""
    if "cluster" not in events or events["cluster"].isna().all():
        return {}
    names = events.dropna(subset=["cluster"]).groupby("cluster")["cluster_name"].first()
    return {int(c): audience_label(n) for c, n in names.items()}


def tested_audience(trigger: Any) -> str:
    """Whose messages a spike's counts are: its audience cluster's, or "all recipients" (with the
    audience most of the opt-outs came from) when the whole campaign was tested."""
    name = _get(trigger, "cluster_name")
    if _get(trigger, "kind") == "campaign" and _get(trigger, "series") in (None, "all recipients"):
        return "all recipients" + (f" (most opt-outs in {name})" if name else "")
    return audience_label(name)


def subject(trigger: Any, names: Mapping[int, str]) -> str:
    """What spiked: "Mobile app activation (#45)" or "valuable customers in <audience>"."""
    if _get(trigger, "kind") == "campaign":
        return campaign_label(names, _get(trigger, "campaign_id"))
    return f"valuable customers in {audience_label(_get(trigger, 'cluster_name'))}"


def window_text(start: Any, end: Any) -> str:
    """"2026-03-26 00:00 to 03-28 00:00 UTC" (the year once)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    tail = f"{end:%m-%d %H:%M}" if start.year == end.year else f"{end:%Y-%m-%d %H:%M}"
    return f"{start:%Y-%m-%d %H:%M} to {tail} UTC"


def percent(rate: Any) -> str:
    """A rate with enough digits for small ones ("0.69%", "9.6%")."""
    return rp.format_percent(rate, _digits(rate))


def percent_interval(rate: Any, low: Any, high: Any) -> str:
    """A rate with its interval at the rate's precision ("9.6% (6.4–14.2%)")."""
    return rp.format_percent_interval(rate, low, high, _digits(rate))


def percent_range(low: Any, high: Any) -> str:
    """A range of rates at the precision of its upper end ("0.0–2.7%", "0.12–0.45%")."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return rp.BLANK
    digits = _digits(high)
    return f"{float(low) * 100:.{digits}f}–{float(high) * 100:.{digits}f}%"


def _digits(rate: Any) -> int:
    try:
        return 2 if abs(float(rate)) < 0.01 else 1
    except (TypeError, ValueError):
        return 1


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key, None)
