"""Campaign, action, broadcast, newsletter and message objects in the App API's shapes.

Broadcasts and newsletters are not part of the generated workspace; they are derived here from
the seed (broadcasts reuse campaign copy, newsletters reuse the weekly digest). Deliveries
(`GET /v1/messages`) are a deterministic *sample*: a few per action per day over the last 30 days
and a few per newsletter, drawn with each action's own rates, not every message the metrics count.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import numpy as np
import pandas as pd

from .workspace import SERIES, Workspace, metric_series
from .workspace.campaigns import SERIES_INDEX

SAMPLE_DAYS = 30  # days of deliveries the messages sample covers
SAMPLE_PER_ACTION_DAY = 3  # deliveries kept per action per day
SAMPLE_PER_NEWSLETTER = 25
N_BROADCASTS = 2
N_NEWSLETTERS = 6
_DAY = 86400
_SENDER = {"email": "Tallyfold <hello@tallyfold.example>", "twilio": "+15550100", "push": ""}
_RECIPIENT = {"email": "{{customer.email}}", "twilio": "{{customer.phone}}", "push": ""}


def day_start(day: dt.date) -> int:
    """Unix seconds of UTC midnight on `day`."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


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


class Broadcasts:
    """API-triggered broadcasts derived from the seed: each reuses one campaign's first action."""

    def __init__(self, ws: Workspace) -> None:
        rng = np.random.default_rng([ws.seed, 101])
        picks = rng.choice(len(ws.campaigns), size=min(N_BROADCASTS, len(ws.campaigns)), replace=False)
        next_action = int(ws.actions["action_id"].max()) + 1000
        self.items: list[dict[str, Any]] = []
        for n, i in enumerate(sorted(picks.tolist())):
            campaign = ws.campaigns.iloc[i]
            source = ws.actions[ws.actions["campaign_id"] == campaign["campaign_id"]].iloc[0]
            broadcast_id = 500 + 7 * n + int(rng.integers(1, 7))
            created = int(campaign["created"]) + int(rng.integers(1, 30)) * _DAY
            self.items.append({
                "id": broadcast_id, "name": f"Broadcast: {campaign['name']}",
                "created": created, "updated": created + int(rng.integers(1, 20)) * _DAY,
                "source_campaign": int(campaign["campaign_id"]),
                "source_action": int(source["action_id"]), "action_id": next_action + n,
                "channel": str(source["channel"]), "tags": list(campaign["tags"]),
                "scale": float(rng.uniform(0.15, 0.35)),
            })
        self._actions = ws.actions

    def get(self, broadcast_id: int) -> dict[str, Any] | None:
        return next((b for b in self.items if b["id"] == broadcast_id), None)

    def object(self, item: dict[str, Any]) -> dict[str, Any]:
        refs = [{"id": item["action_id"], "type": item["channel"]}]
        return {"id": item["id"], "deduplicate_id": f"{item['id']}:{item['updated']}",
                "name": item["name"], "type": "triggered_broadcast", "created": item["created"],
                "updated": item["updated"], "active": True, "state": "running", "actions": refs,
                "msg_template_ids": refs, "first_started": item["created"] + 600,
                "tags": item["tags"]}

    def actions(self, item: dict[str, Any], *, list_item: bool) -> list[dict[str, Any]]:
        source = next(self._actions[self._actions["action_id"] == item["source_action"]].itertuples())
        return [action_object(source, list_item=list_item, broadcast_id=item["id"],
                              action_id=item["action_id"], campaign_id=None)]

    def daily(self, ws: Workspace, item: dict[str, Any], first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
        series = metric_series(ws, item["source_campaign"], item["source_action"], first, last)
        return {k: np.floor(v * item["scale"]).astype(np.int64) for k, v in series.items()}


class Newsletters:
    """One-time sends: a fortnightly digest over the workspace's window, to the 'all' segment."""

    def __init__(self, ws: Workspace) -> None:
        rng = np.random.default_rng([ws.seed, 202])
        digest = ws.actions[ws.actions["channel"] == "email"].iloc[0]
        everyone = int(ws.segments.iloc[0]["segment_id"])
        audience = len(ws.segment_members.get(everyone, ()))
        self.items: list[dict[str, Any]] = []
        self.cubes: dict[int, tuple[dt.date, np.ndarray]] = {}
        for n in range(N_NEWSLETTERS):
            sent_day = ws.end_date - dt.timedelta(days=3 + 14 * n)
            newsletter_id = 40 + 3 * (N_NEWSLETTERS - n) + int(rng.integers(0, 3))
            sent_at = day_start(sent_day) + 15 * 3600
            self.items.append({
                "id": newsletter_id, "deduplicate_id": f"{newsletter_id}:{sent_at}",
                "name": f"Product digest {sent_day.isoformat()}", "sent_at": sent_at,
                "created": sent_at - 3 * _DAY, "updated": sent_at - 3600, "type": "email",
                "tags": ["newsletter"], "recipient_segment_ids": [everyone],
                "subscription_topic_id": None, "content_ids": [newsletter_id * 10 + 1],
                "subject": f"{digest['subject']} ({sent_day:%b %d})",
                "body": digest["body"], "preheader_text": digest["preheader_text"],
            })
            self.cubes[newsletter_id] = (sent_day, _newsletter_cube(rng, min(audience, 40_000)))
        self.items.sort(key=lambda item: item["created"])

    def get(self, newsletter_id: int) -> dict[str, Any] | None:
        return next((item for item in self.items if item["id"] == newsletter_id), None)

    @staticmethod
    def object(item: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "deduplicate_id", "name", "sent_at", "created", "updated", "type", "tags",
                "recipient_segment_ids", "subscription_topic_id", "content_ids")
        return {k: item[k] for k in keys}

    @staticmethod
    def contents(item: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": item["content_ids"][0], "newsletter_id": item["id"], "from_id": 1,
                 "language": "", "type": "email", "name": "Variant A", "subject": item["subject"],
                 "preheader_text": item["preheader_text"], "body": item["body"],
                 "updated": item["updated"]}]

    def daily(self, item: dict[str, Any], first: dt.date, last: dt.date) -> dict[str, np.ndarray]:
        sent_day, cube = self.cubes[item["id"]]
        n_days = (last - first).days + 1
        out = np.zeros((len(SERIES), max(n_days, 0)), dtype=np.int64)
        for k in range(cube.shape[1]):
            index = (sent_day - first).days + k
            if 0 <= index < n_days:
                out[:, index] = cube[:, k]
        return {name: out[SERIES_INDEX[name]] for name in SERIES}


def _newsletter_cube(rng: np.random.Generator, audience: int) -> np.ndarray:
    """(series, 7 days) counts: everything sent on day 0, engagement decaying over a week."""
    cube = np.zeros((len(SERIES), 7), dtype=np.int64)
    decay = np.array([0.55, 0.2, 0.1, 0.06, 0.04, 0.03, 0.02])
    sent = audience
    delivered = int(rng.binomial(sent, 0.98))
    for name, value in (("created", sent), ("sent", sent), ("attempted", sent),
                        ("delivered", delivered), ("bounced", sent - delivered)):
        cube[SERIES_INDEX[name], 0] = value
    for name, rate in (("human_opened", 0.31), ("prefetch_opened", 0.12), ("human_clicked", 0.045),
                       ("machine_clicked", 0.01), ("converted", 0.008), ("unsubscribed", 0.003),
                       ("spammed", 0.0004)):
        cube[SERIES_INDEX[name]] = rng.multinomial(int(rng.binomial(delivered, rate)), decay)
    cube[SERIES_INDEX["opened"]] = cube[SERIES_INDEX["human_opened"]] + cube[SERIES_INDEX["prefetch_opened"]]
    cube[SERIES_INDEX["clicked"]] = cube[SERIES_INDEX["human_clicked"]] + cube[SERIES_INDEX["machine_clicked"]]
    return cube


class Messages:
    """The deterministic delivery sample behind GET /v1/messages, newest first."""

    def __init__(self, ws: Workspace, newsletters: Newsletters, generated_at: int) -> None:
        rng = np.random.default_rng([ws.seed, 303])
        customers = ws.customers
        self._cio = customers["cio_id"]
        self._id = customers["id"]
        self._email = customers["email"]
        self._phone = customers["phone"]
        everyone = np.arange(len(customers))
        records: list[dict[str, Any]] = []
        campaigns = ws.campaigns.set_index("campaign_id")
        first_day = ws.end_date - dt.timedelta(days=SAMPLE_DAYS - 1)
        for position, action in enumerate(ws.actions.itertuples()):
            triggers = campaigns.loc[action.campaign_id, "trigger_segment_ids"]
            pool = ws.segment_members.get(int(triggers[0]), everyone) if len(triggers) else everyone
            pool = pool if len(pool) else everyone
            rates = _rates(ws.metric_cube[position, :, -SAMPLE_DAYS:])
            created_per_day = ws.metric_cube[position, SERIES_INDEX["created"], -SAMPLE_DAYS:]
            for d in range(SAMPLE_DAYS):
                k = int(min(SAMPLE_PER_ACTION_DAY, created_per_day[d]))
                begin = day_start(first_day + dt.timedelta(days=d))
                for _ in range(k):
                    records.append(self._draw(rng, pool, begin, rates, str(action.channel),
                                              campaign_id=int(action.campaign_id),
                                              action_id=int(action.action_id),
                                              subject=action.subject, template=int(action.action_id)))
        news_rates = {"delivered": 0.98, "opened": 0.43, "human_opened": 0.31, "clicked": 0.055,
                      "human_clicked": 0.045, "converted": 0.008, "unsubscribed": 0.003,
                      "spammed": 0.0004}
        for item in newsletters.items:
            for _ in range(SAMPLE_PER_NEWSLETTER):
                records.append(self._draw(rng, everyone, item["sent_at"] - item["sent_at"] % _DAY,
                                          news_rates, "email", newsletter_id=item["id"],
                                          content_id=item["content_ids"][0], subject=item["subject"],
                                          template=item["content_ids"][0], at=item["sent_at"]))
        records = [r for r in records if r["created"] <= generated_at]
        for record in records:
            record["metrics"] = {k: v for k, v in record["metrics"].items() if v <= generated_at}
        records.sort(key=lambda r: (-r["created"], r["id"]))
        self.records = records
        self.created = np.array([r["created"] for r in records], dtype=np.int64)
        self.by_id = {r["id"]: r for r in records}

    def _draw(self, rng: np.random.Generator, pool: np.ndarray, day_begin: int, rates: dict[str, float],
              channel: str, *, subject: str, template: int, campaign_id: int | None = None,
              action_id: int | None = None, newsletter_id: int | None = None,
              content_id: int | None = None, at: int | None = None) -> dict[str, Any]:
        row = int(pool[int(rng.integers(len(pool)))])
        created = at if at is not None else day_begin + int(rng.integers(0, _DAY))
        raw = hashlib.sha256(f"{template}:{row}:{created}:{rng.integers(1 << 30)}".encode()).digest()[:20]
        message_id = base64.urlsafe_b64encode(raw).decode()
        metrics: dict[str, int] = {"created": created}
        failure = None
        sent = created + int(rng.integers(1, 90))
        metrics["sent"] = sent
        if rng.random() < rates.get("delivered", 0.97):
            t = sent + int(rng.integers(5, 600))
            metrics["delivered"] = t
            if channel != "twilio" and rng.random() < rates.get("opened", 0.0):
                t += int(rng.integers(60, 6 * 3600))
                metrics["opened"] = t
                if rng.random() < rates.get("human_opened", 0.0) / max(rates.get("opened", 0.0), 1e-9):
                    metrics["human_opened"] = t
                else:
                    metrics["prefetch_opened"] = t
            if rng.random() < rates.get("clicked", 0.0):
                t += int(rng.integers(5, 3600))
                metrics["clicked"] = t
                if rng.random() < rates.get("human_clicked", 0.0) / max(rates.get("clicked", 0.0), 1e-9):
                    metrics["human_clicked"] = t
                if rng.random() < rates.get("converted", 0.0) / max(rates.get("clicked", 0.0), 1e-9):
                    metrics["converted"] = t + int(rng.integers(60, 2 * _DAY))
            if rng.random() < rates.get("unsubscribed", 0.0):
                metrics["unsubscribed"] = t + int(rng.integers(10, 600))
            if rng.random() < rates.get("spammed", 0.0):
                metrics["spammed"] = t + int(rng.integers(10, 600))
        else:
            metrics["bounced"] = sent + int(rng.integers(5, 600))
            failure = "550 5.1.1 mailbox unavailable" if channel == "email" else "unreachable device"
        return {
            "id": message_id, "deduplicate_id": f"{message_id}:{created}",
            "msg_template_id": template, "customer_id": None, "_row": row,
            "subject": subject if channel == "email" else "", "metrics": metrics,
            "created": created, "failure_message": failure, "campaign_id": campaign_id,
            "action_id": action_id, "parent_action_id": None, "newsletter_id": newsletter_id,
            "content_id": content_id, "broadcast_id": None, "transactional_message_id": None,
            "trigger_event_id": None, "type": channel, "forgotten": False,
        }

    def render(self, record: dict[str, Any], tracked: bool = False) -> dict[str, Any]:
        """The public message object (identifiers looked up now; `_row` stays private)."""
        row = record["_row"]
        ident = self._id.iloc[row]
        email = self._email.iloc[row]
        identifiers = {"id": None if pd.isna(ident) else ident, "email": None if pd.isna(email) else email,
                       "cio_id": self._cio.iloc[row]}
        if record["type"] == "email":
            recipient = identifiers["email"]
        elif record["type"] == "twilio":
            phone = self._phone.iloc[row]
            recipient = None if pd.isna(phone) else phone
        else:
            recipient = f"device-{identifiers['cio_id']}"
        out = {k: v for k, v in record.items() if not k.startswith("_")}
        out["customer_identifiers"] = identifiers
        out["recipient"] = recipient
        out["metrics"] = dict(record["metrics"])
        if tracked:
            out["tracked_responses"] = {}
        return out


def _rates(block: np.ndarray) -> dict[str, float]:
    """Per-message probabilities from an action's (series, days) counts."""
    total = block.sum(axis=1)

    def ratio(num: str, den: str) -> float:
        d = total[SERIES_INDEX[den]]
        return float(total[SERIES_INDEX[num]] / d) if d else 0.0

    return {"delivered": ratio("delivered", "sent"), "opened": ratio("opened", "delivered"),
            "human_opened": ratio("human_opened", "delivered"), "clicked": ratio("clicked", "delivered"),
            "human_clicked": ratio("human_clicked", "delivered"),
            "converted": ratio("converted", "delivered"), "unsubscribed": ratio("unsubscribed", "delivered"),
            "spammed": ratio("spammed", "delivered")}
