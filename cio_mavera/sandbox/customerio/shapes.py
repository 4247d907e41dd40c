"""Campaign and action objects in the App API's shapes."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..workspace import Workspace

_SENDER = {"email": "Tallyfold <hello@tallyfold.example>", "twilio": "+15550100", "push": ""}
_RECIPIENT = {"email": "{{customer.email}}", "twilio": "{{customer.phone}}", "push": ""}


def campaign_object(ws: Workspace, row: pd.Series) -> dict[str, Any]:
    """A campaign as GET /v1/campaigns reports it."""
    actions = ws.actions[ws.actions["campaign_id"] == row["campaign_id"]]
    refs = [{"type": str(a.channel), "id": int(a.action_id)} for a in actions.itertuples()]
    return {
        "id": int(row["campaign_id"]),
        "deduplicate_id": f"{int(row['campaign_id'])}:{int(row['updated'])}",
        "name": row["name"],
        "description": row["description"],
        "type": "segment",
        "created": int(row["created"]),
        "updated": int(row["updated"]),
        "active": bool(row["active"]),
        "state": row["state"],
        "actions": refs,
        "first_started": int(row["created"]) + 3600,
        "created_by": "sandbox@tallyfold.example",
        "tags": list(row["tags"]),
        "trigger_segment_ids": [int(s) for s in row["trigger_segment_ids"]],
        "filter_segment_ids": [],
        "msg_templates": refs,
        "frequency": "once",
        "event_name": "",
    }


def action_object(row: Any, *, list_item: bool, broadcast_id: int | None = None,
                  action_id: int | None = None, campaign_id: int | None = None) -> dict[str, Any]:
    """An action; list items carry `id` as a string (live quirk) and no `broadcast_id`."""
    ident = int(action_id if action_id is not None else row.action_id)
    channel = str(row.channel)
    out: dict[str, Any] = {
        "id": str(ident) if list_item else ident,
        "campaign_id": campaign_id if broadcast_id is not None else int(row.campaign_id),
        "parent_action_id": None,
        "deduplicate_id": f"{ident}:{int(row.updated)}",
        "name": str(row.name),
        "layout": "",
        "created": int(row.created),
        "updated": int(row.updated),
        "body": row.body,
        "language": "",
        "type": channel,
        "sending_state": row.sending_state,
        "from": _SENDER[channel],
        "from_id": 1 if channel == "email" else None,
        "recipient": _RECIPIENT[channel],
    }
    if channel == "email":
        out.update({"reply_to": None, "reply_to_id": None, "preprocessor": "premailer",
                    "subject": row.subject, "cc": "", "bcc": "", "fake_bcc": False,
                    "preheader_text": row.preheader_text, "body_amp": ""})
    if broadcast_id is not None and not list_item:
        out["broadcast_id"] = broadcast_id
    return out
