"""The reporting-webhook stream of a sandbox workspace, as Customer.io would POST it (reference §5).

Per delivery a funnel (email: sent -> delivered -> opened -> clicked -> converted, with bounces,
unsubscribes and spam complaints; push and SMS likewise, in their own shapes) at the workspace's
channel rates, plus the planted spike (`workspace.truth["spike"]`): recipients in the spike's
cluster of the spike's action unsubscribe and complain far more often inside its window. A share of
deliveries is concentrated on that action and window so a few thousand events already show it.
Then duplicates (the same event, same bytes, resent later) and out-of-order arrivals are mixed in.

Deterministic for (workspace, seed, n_events); timestamps cover the workspace's last `days` days.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import InvalidParameter
from ..workspace import Workspace, World, generate_workspace
from ..workspace.campaigns import CHANNEL_PARAMS, SERIES_INDEX

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DAY = 86400
# Inside the spike window, for the spike cluster on the spike action (baseline email: 0.35% / 0.06%).
SPIKE_UNSUBSCRIBE_RATE = 0.09
SPIKE_SPAM_RATE = 0.025
_OBJECT_TYPE = {"email": "email", "push": "push", "twilio": "sms"}
_BOUNCE_MESSAGES = (
    "550 5.1.1 The email account that you tried to reach does not exist",
    "552 5.2.2 Mailbox full",
    "554 5.7.1 Message rejected as spam by content filter",
)


@dataclass(frozen=True)
class StreamEvent:
    """One webhook request body; `duplicate` marks a resend of an earlier `event_id` (same bytes)."""

    event_id: str
    object_type: str
    metric: str
    timestamp: int
    body: bytes
    duplicate: bool = False


class _Ids:
    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def ulid(self, timestamp: float) -> str:
        ms = int(timestamp * 1000) & ((1 << 48) - 1)
        value = (ms << 80) | self.rnd.getrandbits(80)
        return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))

    def delivery(self) -> str:
        return "".join(self.rnd.choice(_B64) for _ in range(28))

    def device(self) -> str:
        return "".join(self.rnd.choice("0123456789abcdef") for _ in range(64))


def _strings(column) -> list[str | None]:
    return [value if isinstance(value, str) and value else None for value in column.astype(object)]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class _Builder:
    """Builds the funnel of one delivery as (timestamp, envelope) pairs."""

    def __init__(self, ws: Workspace, rnd: random.Random) -> None:
        self.ws = ws
        self.rnd = rnd
        self.ids = _Ids(rnd)
        people = ws.customers
        self.cio_ids = _strings(people["cio_id"])
        self.person_ids = _strings(people["id"])
        self.emails = _strings(people["email"])
        self.phones = _strings(people["phone"])
        self.labels = np.asarray(ws.cluster_labels).tolist()
        drops = {d["action_id"]: d for d in ws.truth.get("underperformer_details", [])}
        self.drops = drops

    def _envelope(self, object_type: str, metric: str, ts: float, data: dict) -> tuple[float, dict]:
        return ts, {"event_id": self.ids.ulid(ts), "object_type": object_type, "metric": metric,
                    "timestamp": int(ts), "data": data}

    def delivery(self, action: dict, row: int, t0: float, spike: dict | None) -> list[tuple[float, dict]]:
        channel = action["channel"]
        p = dict(CHANNEL_PARAMS[channel])
        drop = self.drops.get(action["action_id"])
        if drop is not None:  # planted underperformer: one probability lowered, as the metrics have it
            name = "human_clicked" if drop["metric"] == "human_click_rate" else "converted"
            p[name] *= 1 - drop["relative_drop"]
        in_spike = (spike is not None and action["action_id"] == spike["action_id"]
                    and self.labels[row] == spike["cluster"] and spike["start"] <= t0 < spike["end"])
        if in_spike:
            p["unsubscribed"] = SPIKE_UNSUBSCRIBE_RATE
            p["spammed"] = SPIKE_SPAM_RATE
        object_type = _OBJECT_TYPE[channel]
        identifiers = {"id": self.person_ids[row], "email": self.emails[row], "cio_id": self.cio_ids[row]}
        common = {"campaign_id": int(action["campaign_id"]), "action_id": int(action["action_id"]),
                  "customer_id": self.person_ids[row], "delivery_id": self.ids.delivery(),
                  "identifiers": identifiers, "trigger_event_id": None}
        if channel == "email":
            common.update(recipient=self.emails[row], subject=_text(action["subject"]) or _text(action["name"]))
        elif channel == "twilio":
            common.update(recipient=self.phones[row])
        else:
            platform = "ios" if self.rnd.random() < 0.55 else "android"
            common.update(recipients=[{"device_id": self.ids.device(), "device_platform": platform}])
        rnd = self.rnd
        out = [self._envelope(object_type, "sent", t0, dict(common))]
        if rnd.random() < p["bounced"]:
            data = dict(common)
            if channel != "push":
                data["failure_message"] = rnd.choice(_BOUNCE_MESSAGES) if channel == "email" else "30003 Unreachable"
            out.append(self._envelope(object_type, "bounced", t0 + rnd.uniform(1, 120), data))
            return out
        t_delivered = t0 + rnd.uniform(1, 40)
        out.append(self._envelope(object_type, "delivered", t_delivered, dict(common)))
        clicked_at = None
        if channel == "twilio":
            if rnd.random() < p["human_clicked"]:
                clicked_at = t_delivered + rnd.expovariate(1 / 1800)
        else:
            opened = rnd.random() < p["human_opened"]
            if channel == "email" and not opened and rnd.random() < p["prefetch_given_not_human"]:
                data = dict(common, proxied=True, prefetched=True)
                out.append(self._envelope(object_type, "opened", t_delivered + rnd.uniform(1, 300), data))
            if opened:
                t_open = t_delivered + rnd.expovariate(1 / 7200)
                data = dict(common, proxied=False, prefetched=False) if channel == "email" else dict(common)
                out.append(self._envelope(object_type, "opened", t_open, data))
                if rnd.random() < min(1.0, p["human_clicked"] / p["human_opened"]):
                    clicked_at = t_open + rnd.expovariate(1 / 600)
        if clicked_at is not None:
            link = rnd.randint(1, 4)
            data = dict(common, href=f"https://app.tallyfold.example/l/{action['action_id']}/{link}",
                        link_id=link)
            if channel == "email":
                data["machine"] = False
            out.append(self._envelope(object_type, "clicked", clicked_at, data))
            if rnd.random() < min(1.0, p["converted"] / p["human_clicked"]):
                out.append(self._envelope(object_type, "converted",
                                          clicked_at + rnd.expovariate(1 / 3600), dict(common)))
        if rnd.random() < p["unsubscribed"]:
            t_unsub = t_delivered + rnd.expovariate(1 / 5400)
            if channel == "email":
                out.append(self._envelope("email", "unsubscribed", t_unsub, dict(common)))
            else:  # a STOP reply: a subscription change caused by the channel (reference §5.4 customer)
                data = {"customer_id": self.person_ids[row], "email_address": self.emails[row],
                        "identifiers": identifiers}
                out.append(self._envelope(object_type, "unsubscribed", t_unsub, data))
        if rnd.random() < p["spammed"]:
            out.append(self._envelope(object_type, "spammed", t_delivered + rnd.expovariate(1 / 10800),
                                      dict(common)))
        return out


def _window(ws: Workspace, days: int) -> tuple[int, int]:
    end_date = ws.end_date + dt.timedelta(days=1)
    end = int(dt.datetime(end_date.year, end_date.month, end_date.day, tzinfo=dt.UTC).timestamp())
    return end - days * _DAY, end


def generate_events(workspace: Workspace, n_events: int = 5000, *, seed: int = 0, days: int = 14,
                    duplicate_rate: float = 0.02, out_of_order_rate: float = 0.05,
                    spike_share: float = 0.12) -> list[StreamEvent]:
    """Exactly `n_events` request bodies in arrival order (duplicates and reorderings included)."""
    if n_events < 0 or days < 1:
        raise InvalidParameter(f"n_events must be >= 0 and days >= 1, got {n_events}, {days}")
    for name, value in (("duplicate_rate", duplicate_rate), ("out_of_order_rate", out_of_order_rate),
                        ("spike_share", spike_share)):
        if not 0 <= value < 1:
            raise InvalidParameter(f"{name} must be in [0, 1), got {value}")
    rnd = random.Random(f"cio-mavera-webhooks:{workspace.seed}:{seed}")
    builder = _Builder(workspace, rnd)
    start, end = _window(workspace, days)
    actions = workspace.actions.to_dict("records")
    sent = workspace.metric_cube[:, SERIES_INDEX["sent"], -days:].sum(axis=1).astype(float)
    weights = (sent / sent.sum()).tolist() if sent.sum() > 0 else [1.0] * len(actions)
    spike = workspace.truth.get("spike")
    spike_action = None
    if spike is not None:
        spike_action = next((a for a in actions if a["action_id"] == spike["action_id"]), None)
    n_people = len(builder.cio_ids)
    phone_rows = [i for i, phone in enumerate(builder.phones) if phone]

    n_duplicates = int(round(n_events * duplicate_rate))
    target = n_events - n_duplicates
    unique: list[tuple[float, dict]] = []
    while len(unique) < target:
        if spike_action is not None and rnd.random() < spike_share:
            action = spike_action
            t0 = rnd.uniform(max(spike["start"], start), min(spike["end"], end))
        else:
            action = rnd.choices(actions, weights)[0]
            t0 = rnd.uniform(start, end)
        if action["channel"] == "twilio" and phone_rows:
            row = rnd.choice(phone_rows)  # SMS only reaches people with a phone number
        else:
            row = rnd.randrange(n_people)
        unique.extend(builder.delivery(action, row, t0, spike))
    # Deliveries are independent draws over the window, so cutting the last one short biases nothing.
    unique = unique[:target]
    unique.sort(key=lambda pair: pair[0])

    events = [
        StreamEvent(env["event_id"], env["object_type"], env["metric"], env["timestamp"],
                    json.dumps(env, separators=(",", ":")).encode())
        for _ts, env in unique
    ]
    # Out of order: some events arrive a little late (a retry after a failed first attempt).
    for _ in range(int(len(events) * out_of_order_rate)):
        i = rnd.randrange(len(events))
        j = min(len(events) - 1, i + rnd.randint(1, 40))
        events.insert(j, events.pop(i))
    # Duplicates: the same bytes resent later (Customer.io's at-least-once retries).
    for _ in range(n_duplicates):
        i = rnd.randrange(len(events))
        original = events[i]
        copy = StreamEvent(original.event_id, original.object_type, original.metric, original.timestamp,
                           original.body, duplicate=True)
        events.insert(min(len(events), i + rnd.randint(1, 200)), copy)
    return events


def webhook_stream(seed: int = 7, customers: int = 5000, n_events: int = 5000, *,
                   end: dt.datetime | dt.date | None = None, world: World | None = None,
                   **options: Any) -> list[StreamEvent]:
    """The stream of the sandbox workspace for `seed`, `end` and `world` (as `sandbox serve` makes it)."""
    workspace = generate_workspace(seed=seed, customers=customers, end=end, world=world)
    return generate_events(workspace, n_events, seed=seed, **options)
