"""The deliveries behind GET /v1/messages: a deterministic sample, newest first.

Not every message the metrics count: a few per action per day over the last 30 days and a few per
newsletter, drawn with each action's own rates.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import numpy as np
import pandas as pd

from ..workspace import Workspace
from ..workspace.campaigns import SERIES_INDEX
from .sends import Newsletters, day_start

SAMPLE_DAYS = 30  # days of deliveries the messages sample covers
SAMPLE_PER_ACTION_DAY = 3  # deliveries kept per action per day
SAMPLE_PER_NEWSLETTER = 25
_DAY = 86400


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
