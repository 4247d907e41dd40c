"""The reporting-webhook stream of a sandbox workspace, as Customer.io would POST it (reference §5).

Per delivery a funnel (email: sent -> delivered -> opened -> clicked -> converted, with bounces,
unsubscribes and spam complaints; push and SMS likewise, in their own shapes). What the stream
holds follows the workspace's plan (`truth["stream"]`, `truth["spike"]`, see
`sandbox/workspace/stream_plan.py`) and its `StreamWorld`:

- when: each campaign sends on an hour-of-day cycle (its own phase) and a weekly cycle, the weekly
  digest in one burst on Tuesday mornings, broadcasts (newsletters) to much of the list within a
  couple of hours; the clean world sends uniformly over the window;
- who opts out: the channel's rates times the campaign's and the audience cluster's multipliers,
  times a day-to-day wobble per campaign (or broadcast); inside the spike's window the spike
  cluster's recipients of the spike action opt out at their own rate plus the planted excess.
  A share of deliveries (`spike_share`) is concentrated on that action and window so a few
  thousand events already show it;
- nothing at or after the workspace's `end`: events that would happen later (a late unsubscribe of
  a message delivered an hour ago) have not happened yet.

Then duplicates (the same event, same bytes, resent later) and out-of-order arrivals are mixed in.
Deterministic for (workspace, seed, n_events, days).
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import InvalidParameter
from ..workspace import Workspace, World, generate_workspace
from ..workspace.campaigns import CHANNEL_PARAMS, SERIES_INDEX
from ..workspace.stream_plan import SPIKE_SPAM_RATE, SPIKE_UNSUBSCRIBE_RATE

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_HOUR = 3600
_DAY = 86400
_OBJECT_TYPE = {"email": "email", "push": "push", "twilio": "sms"}
_BOUNCE_MESSAGES = (
    "550 5.1.1 The email account that you tried to reach does not exist",
    "552 5.2.2 Mailbox full",
    "554 5.7.1 Message rejected as spam by content filter",
)
_PEAK_HOUR_UTC = 15.0  # sends peak mid-afternoon UTC (morning in the Americas, afternoon in Europe)
_PHASE_SD_HOURS = 2.5  # each campaign's own peak scatters around it
_DIGEST_WEEKDAY, _DIGEST_HOUR_UTC = 1, 9  # the weekly digest goes out on Tuesday mornings
_DIGEST_TAG = "newsletter"


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


class _OptOuts:
    """Each delivery's unsubscribe and complaint probabilities: channel x campaign x audience x day."""

    def __init__(self, ws: Workspace, start: int, days: int) -> None:
        plan = ws.truth.get("stream", {})
        self.campaign = {row["campaign_id"]: row["opt_out_multiplier"] for row in plan.get("campaigns", [])}
        self.audience = plan.get("audience_opt_out_multipliers") or []
        self.start, self.days = start, days
        self.seed = ws.seed
        self.cv = ws.world.stream.daily_rate_cv
        self.wobble: dict[tuple[str, int], np.ndarray] = {}
        spike = ws.truth.get("spike") or {}
        self.spike = spike
        unsub, spam = CHANNEL_PARAMS["email"]["unsubscribed"], CHANNEL_PARAMS["email"]["spammed"]
        self.excess = (spike.get("unsubscribe_rate", SPIKE_UNSUBSCRIBE_RATE) - spike.get("baseline_unsubscribe_rate", unsub),
                       spike.get("spam_rate", SPIKE_SPAM_RATE) - spike.get("baseline_spam_rate", spam))

    def _day_factor(self, source: tuple[str, int], t0: float) -> float:
        if self.cv <= 0:
            return 1.0
        if source not in self.wobble:  # seeded by the source itself: the same days whatever the replay
            kind = 1 if source[0] == "campaign" else 2
            rng = np.random.default_rng([self.seed, 303, kind, source[1]])
            self.wobble[source] = rng.gamma(1 / self.cv ** 2, self.cv ** 2, size=self.days + 1)
        return float(self.wobble[source][min(self.days, max(0, int(t0 - self.start) // _DAY))])

    def probabilities(self, channel: str, source: tuple[str, int], multiplier: float, label: int, t0: float,
                      in_spike: bool) -> tuple[float, float]:
        """(P(unsubscribe), P(spam complaint)) of one delivery."""
        audience = self.audience[label] if label < len(self.audience) else 1.0
        factor = multiplier * audience * self._day_factor(source, t0)
        unsub = CHANNEL_PARAMS[channel]["unsubscribed"] * factor
        spam = CHANNEL_PARAMS[channel]["spammed"] * factor
        if in_spike:
            unsub, spam = unsub + self.excess[0], spam + self.excess[1]
        return min(unsub, 1.0), min(spam, 1.0)


class _Builder:
    """Builds the funnel of one delivery as (timestamp, envelope) pairs."""

    def __init__(self, ws: Workspace, rnd: random.Random, opt_outs: _OptOuts) -> None:
        self.ws = ws
        self.rnd = rnd
        self.ids = _Ids(rnd)
        people = ws.customers
        self.cio_ids = _strings(people["cio_id"])
        self.person_ids = _strings(people["id"])
        self.emails = _strings(people["email"])
        self.phones = _strings(people["phone"])
        self.labels = np.asarray(ws.cluster_labels).tolist()
        self.drops = {d["action_id"]: d for d in ws.truth.get("underperformer_details", [])}
        self.opt_outs = opt_outs

    def _envelope(self, object_type: str, metric: str, ts: float, data: dict) -> tuple[float, dict]:
        return ts, {"event_id": self.ids.ulid(ts), "object_type": object_type, "metric": metric,
                    "timestamp": int(ts), "data": data}

    def _common(self, source: dict, row: int) -> dict:
        identifiers = {"id": self.person_ids[row], "email": self.emails[row], "cio_id": self.cio_ids[row]}
        if "newsletter_id" in source:  # a newsletter's delivery fields (reference §5.3, third variant)
            return {"newsletter_id": int(source["newsletter_id"]), "content_id": int(source["content_id"]),
                    "customer_id": self.person_ids[row], "delivery_id": self.ids.delivery(),
                    "identifiers": identifiers}
        return {"campaign_id": int(source["campaign_id"]), "action_id": int(source["action_id"]),
                "customer_id": self.person_ids[row], "delivery_id": self.ids.delivery(),
                "identifiers": identifiers, "trigger_event_id": None}

    def delivery(self, source: dict, row: int, t0: float, spike: dict | None) -> list[tuple[float, dict]]:
        channel = source["channel"]
        p = dict(CHANNEL_PARAMS[channel])
        drop = self.drops.get(source.get("action_id"))
        if drop is not None:  # planted underperformer: one probability lowered, as the metrics have it
            name = "human_clicked" if drop["metric"] == "human_click_rate" else "converted"
            p[name] *= 1 - drop["relative_drop"]
        in_spike = (spike is not None and source.get("action_id") == spike["action_id"]
                    and self.labels[row] == spike["cluster"] and spike["start"] <= t0 < spike["end"])
        p["unsubscribed"], p["spammed"] = self.opt_outs.probabilities(
            channel, source["key"], source["opt_out_multiplier"], self.labels[row], t0, in_spike)
        object_type = _OBJECT_TYPE[channel]
        common = self._common(source, row)
        identifiers = common["identifiers"]
        if channel == "email":
            common.update(recipient=self.emails[row], subject=_text(source["subject"]) or _text(source["name"]))
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
            data = dict(common, href=f"https://app.tallyfold.example/l/{source['link_key']}/{link}",
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


# --- when messages are sent -----------------------------------------------------------------------


def stream_window(ws: Workspace, days: int) -> tuple[int, int]:
    """[start, end) of a `days`-day stream: it ends at the workspace's end, never after it."""
    end = int(ws.end.timestamp())
    return end - days * _DAY, end


def _hour_starts(start: int, end: int) -> np.ndarray:
    return np.arange(start, end, _HOUR, dtype=np.int64)


def _cycle(hours: np.ndarray, phase: float, daily: float, weekly: float) -> np.ndarray:
    """Relative send volume per hour: an hour-of-day wave around `phase` times a weekday/weekend step."""
    hour_of_day = (hours % _DAY) / _HOUR + 0.5
    wave = 1 + daily * np.cos(2 * np.pi * (hour_of_day - phase) / 24)
    weekday = ((hours // _DAY) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    step = np.where(weekday >= 5, 1 - weekly, 1 + weekly * 2 / 5)
    return np.clip(wave, 0, None) * np.clip(step, 0, None)


def _digest_hours(hours: np.ndarray, burst_hours: float) -> np.ndarray:
    """1 in the weekly digest's send hours (Tuesday from 09:00 UTC), else 0."""
    weekday = ((hours // _DAY) + 3) % 7
    offset = (hours % _DAY) / _HOUR - _DIGEST_HOUR_UTC
    return ((weekday == _DIGEST_WEEKDAY) & (offset >= 0) & (offset < max(1.0, burst_hours))).astype(float)


class _Schedule:
    """Draws (campaign action, send time) pairs: each action's share of volume spread over its hours."""

    def __init__(self, ws: Workspace, actions: list[dict], start: int, end: int, days: int) -> None:
        knobs = ws.world.stream
        self.hours = _hour_starts(start, end)
        self.end = end
        sent = ws.metric_cube[:, SERIES_INDEX["sent"], -days:].sum(axis=1).astype(float)
        shares = sent / sent.sum() if sent.sum() > 0 else np.full(len(actions), 1 / max(1, len(actions)))
        phases = np.random.default_rng([ws.seed, 304]).normal(_PEAK_HOUR_UTC, _PHASE_SD_HOURS,
                                                                size=len(ws.campaigns))
        phase_of = dict(zip(ws.campaigns["campaign_id"].astype(int), phases.tolist(), strict=True))
        digests = _digest_campaigns(ws)
        # Each hour cell's width: the last hour may be cut short by `end`.
        width = np.minimum(self.hours + _HOUR, end) - self.hours
        rows = []
        for action, share in zip(actions, shares, strict=True):
            if knobs.digest_burst_hours > 0 and action["campaign_id"] in digests:
                profile = _digest_hours(self.hours, knobs.digest_burst_hours)
            else:
                profile = _cycle(self.hours, phase_of.get(action["campaign_id"], _PEAK_HOUR_UTC),
                                 knobs.daily_cycle, knobs.weekly_cycle)
            profile = profile * width
            if profile.sum() <= 0:  # no send hour inside the window: spread it out
                profile = width.astype(float)
            rows.append(share * profile / profile.sum())
        weights = np.concatenate(rows) if rows else np.zeros(0)
        self.cumulative = np.cumsum(weights).tolist()
        self.actions = actions

    def draw(self, rnd: random.Random) -> tuple[dict, float]:
        """One (action, send time) at the planned rates."""
        cell = bisect.bisect_right(self.cumulative, rnd.random() * self.cumulative[-1])
        cell = min(cell, len(self.cumulative) - 1)
        action, hour = divmod(cell, len(self.hours))
        t0 = float(self.hours[hour]) + rnd.random() * (min(float(self.hours[hour]) + _HOUR, self.end)
                                                       - float(self.hours[hour]))
        return self.actions[action], t0


def _digest_campaigns(ws: Workspace) -> set[int]:
    return {int(c) for c, tags in zip(ws.campaigns["campaign_id"], ws.campaigns["tags"], strict=True)
            if _DIGEST_TAG in list(tags)}


def _sources(ws: Workspace) -> tuple[list[dict], list[dict]]:
    """(campaign actions, broadcasts) as the builder's sources: channel, copy and opt-out multiplier."""
    plan = ws.truth.get("stream", {})
    multiplier = {row["campaign_id"]: row["opt_out_multiplier"] for row in plan.get("campaigns", [])}
    actions = []
    for action in ws.actions.to_dict("records"):
        campaign_id = int(action["campaign_id"])
        actions.append({**action, "key": ("campaign", campaign_id), "link_key": action["action_id"],
                        "opt_out_multiplier": multiplier.get(campaign_id, 1.0)})
    emails = [a for a in actions if a["channel"] == "email"]
    digests = _digest_campaigns(ws)
    copy = next((a for a in emails if a["campaign_id"] in digests), emails[0] if emails else {})
    broadcasts = []
    for item in plan.get("broadcasts", []):
        newsletter_id = int(item["newsletter_id"])
        day = dt.datetime.fromtimestamp(item["start"], dt.UTC)
        broadcasts.append({**item, "channel": "email", "key": ("newsletter", newsletter_id),
                           "link_key": f"n{newsletter_id}", "content_id": newsletter_id * 10 + 1,
                           "subject": f"{_text(copy.get('subject')) or 'Product news'} ({day:%b %d})",
                           "name": f"Product news {day:%Y-%m-%d}"})
    return actions, broadcasts


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
    start, end = stream_window(workspace, days)
    builder = _Builder(workspace, rnd, _OptOuts(workspace, start, days))
    actions, broadcasts = _sources(workspace)
    broadcasts = [b for b in broadcasts if start <= b["start"] and b["end"] <= end]
    if sum(b["share"] for b in broadcasts) + spike_share >= 1:
        raise InvalidParameter("broadcast shares and spike_share must leave room for campaign sends")
    schedule = _Schedule(workspace, actions, start, end, days)
    spike = workspace.truth.get("spike")
    spike_action = None
    if spike is not None and spike["start"] < end and spike["end"] > start:
        spike_action = next((a for a in actions if a["action_id"] == spike["action_id"]), None)
    n_people = len(builder.cio_ids)
    phone_rows = [i for i, phone in enumerate(builder.phones) if phone]

    n_duplicates = int(round(n_events * duplicate_rate))
    target = n_events - n_duplicates
    unique: list[tuple[float, dict]] = []
    while len(unique) < target:
        draw = rnd.random()
        if spike_action is not None and draw < spike_share:
            source, t0 = spike_action, rnd.uniform(max(spike["start"], start), min(spike["end"], end))
        else:
            draw -= spike_share
            broadcast = None
            for item in broadcasts:
                if draw < item["share"]:
                    broadcast = item
                    break
                draw -= item["share"]
            if broadcast is not None:
                source, t0 = broadcast, rnd.uniform(broadcast["start"], broadcast["end"])
            else:
                source, t0 = schedule.draw(rnd)
        if source["channel"] == "twilio" and phone_rows:
            row = rnd.choice(phone_rows)  # SMS only reaches people with a phone number
        else:
            row = rnd.randrange(n_people)
        # What would happen at or after `end` has not happened yet when the workspace is read.
        unique.extend(pair for pair in builder.delivery(source, row, t0, spike) if pair[0] < end)
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
