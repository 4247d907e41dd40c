"""Job 1's names for readers: one spelling of each channel, rate, message and campaign everywhere.

Customer.io calls SMS "twilio"; every table, legend and sentence of the report says "SMS". These
return plain text: each sink escapes it its own way (`markup.md`, `report_parts.table`,
`markup.plain_label`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from cio_mavera.jobs.campaigns.stats import rate_definition

CHANNEL_NAMES = {"email": "email", "push": "push", "twilio": "SMS", "whatsapp": "WhatsApp",
                 "in_app": "in-app", "webhook": "webhook", "slack": "Slack"}


def channel_name(channel: Any) -> str:
    """The reader's name of a Customer.io channel ("twilio" -> "SMS")."""
    return CHANNEL_NAMES.get(str(channel), str(channel))


def rate_label(metric: str, lower: bool = False) -> str:
    """A rate's name ("Human click rate"; "human click rate" with `lower`)."""
    label = rate_definition(metric).label
    return label.lower() if lower else label


def shortfall_word(metric: str) -> str:
    """"low" for a rate that should be high, "high" for one that should be low (unsubscribes)."""
    return "low" if rate_definition(metric).higher_is_better else "high"


def message_label(name: Any, action_id: Any) -> str:
    """"Welcome email (#732)": a message's name beside its id."""
    text = str(name or "").strip() or "message"
    return f"{text} (#{int(action_id)})"


def campaign_names(campaigns: pd.DataFrame) -> dict[int, str]:
    """{campaign_id: name} from the campaigns frame."""
    if campaigns.empty:
        return {}
    return {int(c): str(n or "") for c, n in zip(campaigns["campaign_id"], campaigns["name"], strict=True)}


def campaign_label(names: Mapping[int, str], campaign_id: Any) -> str:
    """"Onboarding: welcome series (#11)": a campaign's name beside its id."""
    name = names.get(int(campaign_id), "").strip()
    return f"{name} (#{int(campaign_id)})" if name else f"#{int(campaign_id)}"
