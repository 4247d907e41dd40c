"""Broadcasts and newsletters, derived from the seed (the generated workspace has neither).

Broadcasts reuse a campaign's first action and its metrics at a fraction of the volume;
newsletters are a fortnightly digest to the 'all' segment, reusing the weekly digest's copy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from ..workspace import SERIES, Workspace, metric_series
from ..workspace.campaigns import SERIES_INDEX
from .shapes import action_object

N_BROADCASTS = 2
N_NEWSLETTERS = 6
_DAY = 86400


def day_start(day: dt.date) -> int:
    """Unix seconds of UTC midnight on `day`."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


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
