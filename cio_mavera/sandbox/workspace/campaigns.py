"""Sandbox campaigns, actions and their daily v2 metric counts, with planted underperformers.

How messy the counts are is the world's business (`world.CampaignWorld`). In the realistic world
each message's true rates scatter around its channel's (`CHANNEL_PARAMS` is the typical message),
every message-day moves on top of that, and volumes are noisy and bursty; in the clean world every
non-planted message of a channel has exactly the channel's rates. Either way counts are a chain of
plain binomial draws, so they are consistent by construction (see `generate_metric_cube`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .catalog import CAMPAIGNS, CampaignTemplate
from .world import CampaignWorld

# Every v2 series name (customerio-api.md §3.1), in the order the API lists them.
SERIES: tuple[str, ...] = (
    "attempted", "bounced", "clicked", "converted", "created", "deferred", "delivered", "drafted",
    "failed", "human_clicked", "human_opened", "link_untracked", "machine_clicked", "open_untracked",
    "opened", "prefetch_opened", "replied", "sent", "spammed", "suppressed", "topic_unsubscribed",
    "tracking_consent_denied", "tracking_consent_granted", "undeliverable", "unsubscribed", "untracked",
)
SERIES_INDEX = {name: i for i, name in enumerate(SERIES)}
CHANNELS: tuple[str, ...] = ("email", "push", "twilio")

# Generating probabilities per channel. Names are the conditional draws in generate_metric_cube;
# a 0 means the channel has no such thing (no opens for SMS, no spam button for push, ...).
CHANNEL_PARAMS: dict[str, dict[str, float]] = {
    "email": dict(suppressed=0.008, failed=0.002, undeliverable=0.001, attempted=0.01, deferred=0.015,
                  bounced=0.018, open_untracked=0.05, link_untracked=0.03, human_opened=0.27,
                  prefetch_given_not_human=0.22, human_clicked=0.038, machine_clicked=0.012,
                  converted=0.014, unsubscribed=0.0035, topic_unsubscribed=0.0012, spammed=0.0006,
                  replied=0.0, consent_granted=0.0004, consent_denied=0.00015),
    "push": dict(suppressed=0.01, failed=0.003, undeliverable=0.002, attempted=0.005, deferred=0.0,
                 bounced=0.035, open_untracked=0.0, link_untracked=0.0, human_opened=0.075,
                 prefetch_given_not_human=0.0, human_clicked=0.022, machine_clicked=0.0,
                 converted=0.009, unsubscribed=0.0, topic_unsubscribed=0.0, spammed=0.0,
                 replied=0.0, consent_granted=0.0, consent_denied=0.0),
    "twilio": dict(suppressed=0.006, failed=0.004, undeliverable=0.002, attempted=0.01, deferred=0.0,
                   bounced=0.015, open_untracked=0.0, link_untracked=0.0, human_opened=0.0,
                   prefetch_given_not_human=0.0, human_clicked=0.055, machine_clicked=0.01,
                   converted=0.012, unsubscribed=0.004, topic_unsubscribed=0.0, spammed=0.0,
                   replied=0.012, consent_granted=0.0, consent_denied=0.0),
}

# Daily messages created per action: log-uniform range, and the floor for planted actions so a
# 30-day window detects a ~50% drop with near-certain power.
_VOLUME_RANGE = {"email": (500.0, 3000.0), "push": (400.0, 2000.0), "twilio": (200.0, 700.0)}
_PLANTED_VOLUME_FLOOR = {"email": 1800.0, "push": 1800.0, "twilio": 700.0}
_PLANT_METRICS = ("human_click_rate", "conversion_rate")
_PLANT_PARAM = {"human_click_rate": "human_clicked", "conversion_rate": "converted"}
_DOW_FACTOR = np.array([1.05, 1.1, 1.1, 1.05, 1.0, 0.8, 0.75])  # Monday first
_NEWSLETTER_WEEKDAY = 1  # the weekly digest goes out on Tuesdays
_BEST_WEEKDAY = 1  # engagement's weekly cycle peaks on Tuesdays
_KEYS = tuple(CHANNEL_PARAMS["email"])
_ENGAGEMENT_KEYS = frozenset({"human_opened", "prefetch_given_not_human", "human_clicked", "machine_clicked",
                              "converted", "replied"})


def build_campaigns(rng: np.random.Generator, end_date: dt.date, days: int,
                    segment_ids: dict[str, int]) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(campaigns, actions, daily base volume per action) for 12-16 campaigns chosen from the catalogue."""
    n_campaigns = int(rng.integers(12, len(CAMPAIGNS) + 1))
    chosen = sorted(rng.choice(len(CAMPAIGNS), size=n_campaigns, replace=False))
    templates = [CAMPAIGNS[i] for i in chosen]
    end_ts = _day_start(end_date) + 86400
    campaign_ids = np.cumsum(rng.integers(1, 6, size=n_campaigns)) + int(rng.integers(1, 40))
    next_action_id = int(rng.integers(100, 900))
    campaign_rows, action_rows, volumes = [], [], []
    for template, campaign_id in zip(templates, campaign_ids, strict=True):
        created = end_ts - int(rng.integers(days + 20, days + 700)) * 86400 - int(rng.integers(0, 86400))
        updated = created + int(rng.integers(3600, end_ts - created - 10 * 86400))
        campaign_rows.append(_campaign_row(template, int(campaign_id), created, updated, segment_ids))
        for action in template.actions:
            action_created = created + int(rng.integers(60, 3 * 86400))
            action_rows.append({
                "action_id": next_action_id, "campaign_id": int(campaign_id), "channel": action.channel,
                "name": action.name, "subject": action.subject, "preheader_text": action.preheader,
                "body": action.body, "created": action_created,
                "updated": action_created + int(rng.integers(0, max(1, updated - action_created))),
                "sending_state": "automatic",
            })
            low, high = _VOLUME_RANGE[action.channel]
            volumes.append(float(np.exp(rng.uniform(np.log(low), np.log(high)))))
            next_action_id += int(rng.integers(1, 5))
    return pd.DataFrame(campaign_rows), pd.DataFrame(action_rows), np.array(volumes)


def _campaign_row(template: CampaignTemplate, campaign_id: int, created: int, updated: int,
                  segment_ids: dict[str, int]) -> dict:
    return {
        "campaign_id": campaign_id, "name": template.name, "created": created, "updated": updated,
        "active": True, "state": "running", "tags": list(template.tags),
        "trigger_segment_ids": [segment_ids[template.trigger]], "description": template.description,
        "template": template.key,
    }


def choose_plants(rng: np.random.Generator, actions: pd.DataFrame, campaigns: pd.DataFrame,
                  world: CampaignWorld) -> list[dict]:
    """Three planted underperformers: one email, two from channels with >= 4 actions, distinct campaigns.

    Each gets how far out it will lie: `spread_sds` spreads below its channel's typical message, and
    at least `drop_floor` below it in relative terms (see `message_probabilities`).
    """
    newsletter = set(campaigns.loc[campaigns["template"] == "newsletter", "campaign_id"])
    counts = actions["channel"].value_counts()
    eligible = actions[actions["channel"].map(counts).ge(4) & ~actions["campaign_id"].isin(newsletter)]
    emails = eligible[eligible["channel"] == "email"]
    picked = [emails.iloc[int(rng.integers(len(emails)))]]
    while len(picked) < 3:
        used_campaigns = {int(p["campaign_id"]) for p in picked}
        used_channels = {str(p["channel"]) for p in picked}
        pool = eligible[~eligible["campaign_id"].isin(used_campaigns)]
        fresh = pool[~pool["channel"].isin(used_channels)]  # prefer a channel not planted yet
        pool = fresh if not fresh.empty else pool
        picked.append(pool.iloc[int(rng.integers(len(pool)))])
    metrics, offset = [], int(rng.integers(2))
    for i, row in enumerate(picked):
        # SMS conversions are too rare for a sure 30-day detection, so SMS plants drop clicks.
        metrics.append("human_click_rate" if row["channel"] == "twilio" else _PLANT_METRICS[(i + offset) % 2])
    if "conversion_rate" not in metrics:  # keep both kinds of plant whenever a channel allows it
        flexible = [i for i, row in enumerate(picked) if row["channel"] != "twilio"]
        metrics[flexible[int(rng.integers(len(flexible)))]] = "conversion_rate"
    plants = []
    for row, metric in zip(picked, metrics, strict=True):
        plants.append({"campaign_id": int(row["campaign_id"]), "action_id": int(row["action_id"]),
                       "channel": str(row["channel"]), "metric": metric,
                       "spread_sds_drawn": float(rng.uniform(world.plant_spread_sds_low,
                                                             world.plant_spread_sds_high)),
                       "drop_floor": float(world.plant_min_relative_drop + rng.uniform(0.0, 0.1))})
    return plants


def spread_logit_sd(cv: float, rate: float) -> float:
    """Logit-scale SD whose spread of rates around `rate` has coefficient of variation `cv` (delta method)."""
    return cv / (1.0 - rate) if 0.0 < rate < 1.0 else 0.0


def message_probabilities(rng: np.random.Generator, actions: pd.DataFrame, plants: list[dict],
                          world: CampaignWorld) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Each message's true generating probabilities, shape (actions,) per key, and the plants' details.

    A message's probability is logit-normal around its channel's (median = the channel's value,
    coefficient of variation `heterogeneity_cv`), drawn independently per key. A planted message's
    one key is put `spread_sds` logit spreads below the channel's value, or lower still when that
    is less than its `drop_floor`; the details say where it ended up.
    """
    channels = actions["channel"].to_numpy()
    n = len(actions)
    draws = rng.standard_normal((n, len(_KEYS)))  # drawn whatever the knobs, so worlds share them
    probabilities: dict[str, np.ndarray] = {}
    for j, key in enumerate(_KEYS):
        typical = np.array([CHANNEL_PARAMS[c][key] for c in channels])
        sd = np.array([spread_logit_sd(world.heterogeneity_cv, p) for p in typical])
        probabilities[key] = _shift_logit(typical, sd * draws[:, j])
    position = {int(a): i for i, a in enumerate(actions["action_id"])}
    details = []
    for plant in plants:
        i, key = position[plant["action_id"]], _PLANT_PARAM[plant["metric"]]
        typical = CHANNEL_PARAMS[plant["channel"]][key]
        sd = spread_logit_sd(world.heterogeneity_cv, typical)
        true_rate = min(float(_shift_logit(np.array([typical]), np.array([-plant["spread_sds_drawn"] * sd]))[0]),
                        typical * (1.0 - plant["drop_floor"]))
        probabilities[key][i] = true_rate
        below = _logit(typical) - _logit(true_rate)
        details.append({
            "campaign_id": plant["campaign_id"], "action_id": plant["action_id"],
            "channel": plant["channel"], "metric": plant["metric"],
            "baseline_rate": typical, "true_rate": round(true_rate, 6),
            "relative_drop": round(1.0 - true_rate / typical, 3),
            "spread_logit_sd": round(sd, 4),
            "spread_sds": round(below / sd, 2) if sd > 0 else None,
        })
    return probabilities, details


def message_rates(actions: pd.DataFrame, probabilities: dict[str, np.ndarray]) -> list[dict]:
    """Every message's expected RATE_METRICS from its true probabilities (None: undefined)."""
    out = []
    for i, row in enumerate(actions.itertuples(index=False)):
        p = {key: float(values[i]) for key, values in probabilities.items()}
        out.append({"action_id": int(row.action_id), "channel": str(row.channel),
                    **{k: (None if v is None else round(v, 6)) for k, v in _expected_rates(p).items()}})
    return out


def true_baselines() -> dict[str, dict[str, float | None]]:
    """Expected value of every RATE_METRIC per channel for a typical (median, non-planted) message."""
    return {channel: _expected_rates(p) for channel, p in CHANNEL_PARAMS.items()}


def _expected_rates(p: dict[str, float]) -> dict[str, float | None]:
    opens = p["human_opened"] > 0
    cto = (p["human_clicked"] * (1 - p["link_untracked"]) / (p["human_opened"] * (1 - p["open_untracked"]))
           if opens else None)
    return {
        "delivery_rate": 1 - p["bounced"],
        "human_open_rate": p["human_opened"] if opens else 0.0,
        "human_click_rate": p["human_clicked"],
        "click_to_open_rate": cto,
        "conversion_rate": p["converted"],
        "unsubscribe_rate": p["unsubscribed"],
        "bounce_rate": p["bounced"],
        "spam_complaint_rate": p["spammed"],
    }


def generate_metric_cube(rng: np.random.Generator, actions: pd.DataFrame, volumes: np.ndarray,
                         probabilities: dict[str, np.ndarray], plants: list[dict],
                         campaigns: pd.DataFrame, end: dt.datetime, days: int,
                         world: CampaignWorld) -> np.ndarray:
    """Daily counts, shape (actions, len(SERIES), days), oldest day first; the last day ends at `end`.

    Chain per action and day: created ~ Poisson (around a gamma-noisy, bursty expectation);
    suppressed, failed, undeliverable are taken out of created and the rest is sent; bounced comes
    out of sent and the rest is delivered. Opens and clicks are drawn from the tracked part of
    delivered (delivered - open_untracked, resp. delivered - link_untracked); prefetch opens only
    from people who did not open as humans, so opened = human_opened + prefetch_opened and
    clicked = human_clicked + machine_clicked. Every draw is plain binomial with that message-day's
    probability (the message's own, moved by the day effect, the weekly cycle and the drift).
    """
    n = len(actions)
    end_date = (end - dt.timedelta(microseconds=1)).date()
    dates = [end_date - dt.timedelta(days=days - 1 - d) for d in range(days)]
    weekday = np.array([d.weekday() for d in dates])
    params = _daily_probabilities(rng, probabilities, weekday, world)
    expected = _expected_volumes(rng, actions, volumes, plants, campaigns, weekday, world)
    elapsed = (end - dt.datetime.combine(end_date, dt.time(), tzinfo=dt.UTC)) / dt.timedelta(days=1)
    expected[:, -1] *= elapsed  # the last day stops at `end`: nothing is counted after it

    def b(trials: np.ndarray, p: np.ndarray) -> np.ndarray:
        return rng.binomial(trials, p)

    cube = np.zeros((n, len(SERIES), days), dtype=np.int64)
    created = rng.poisson(expected)
    suppressed = b(created, params["suppressed"])
    failed = b(created - suppressed, params["failed"])
    undeliverable = b(created - suppressed - failed, params["undeliverable"])
    sent = created - suppressed - failed - undeliverable
    bounced = b(sent, params["bounced"])
    delivered = sent - bounced
    open_untracked = b(delivered, params["open_untracked"])
    link_untracked = b(delivered, params["link_untracked"])
    human_opened = b(delivered - open_untracked, params["human_opened"])
    prefetch_opened = b(delivered - open_untracked - human_opened, params["prefetch_given_not_human"])
    # A human click implies an open; the cap rarely binds at these volumes but keeps the invariant.
    human_clicked = b(delivered - link_untracked, params["human_clicked"])
    has_opens = probabilities["human_opened"] > 0
    human_clicked[has_opens] = np.minimum(human_clicked[has_opens], human_opened[has_opens])
    machine_clicked = b(delivered - link_untracked - human_clicked, params["machine_clicked"])
    values = {
        "created": created, "suppressed": suppressed, "failed": failed, "undeliverable": undeliverable,
        "sent": sent, "bounced": bounced, "delivered": delivered,
        "attempted": b(created, params["attempted"]), "deferred": b(sent, params["deferred"]),
        "drafted": np.zeros_like(created),  # automatic sending: nothing waits as a draft
        "open_untracked": open_untracked, "link_untracked": link_untracked,
        # untracked = sent emails whose pixel was withheld: the delivered ones plus the bounced ones.
        "untracked": open_untracked + b(bounced, params["open_untracked"]),
        "human_opened": human_opened, "prefetch_opened": prefetch_opened,
        "opened": human_opened + prefetch_opened,
        "human_clicked": human_clicked, "machine_clicked": machine_clicked,
        "clicked": human_clicked + machine_clicked,
        "converted": b(delivered, params["converted"]),
        "unsubscribed": b(delivered, params["unsubscribed"]),
        "topic_unsubscribed": b(delivered, params["topic_unsubscribed"]),
        "spammed": b(delivered, params["spammed"]),
        "replied": b(delivered, params["replied"]),
        "tracking_consent_granted": b(delivered, params["consent_granted"]),
        "tracking_consent_denied": b(delivered, params["consent_denied"]),
    }
    for name, array in values.items():
        cube[:, SERIES_INDEX[name], :] = array
    return cube


def _daily_probabilities(rng: np.random.Generator, probabilities: dict[str, np.ndarray],
                         weekday: np.ndarray, world: CampaignWorld) -> dict[str, np.ndarray]:
    """Each key's probability per message and day, shape (actions, days).

    On the logit scale: the message's own value, plus a day effect (independent per message, day
    and key), plus the weekly cycle (engagement only: people read more early in the week), plus a
    linear drift that is zero on the last day.
    """
    n, days = len(next(iter(probabilities.values()))), len(weekday)
    cycle = world.weekly_rate_amplitude * np.cos(2 * np.pi * (weekday - _BEST_WEEKDAY) / 7)
    age = (np.arange(days) - (days - 1)) / max(days - 1, 1)  # -1 on the first day, 0 on the last
    daily = {}
    for key in _KEYS:
        shift = world.day_effect_sd * rng.standard_normal((n, days))
        shift += world.rate_drift_sd * rng.standard_normal(n)[:, None] * age[None, :]
        if key in _ENGAGEMENT_KEYS:
            shift += cycle[None, :]
        daily[key] = _shift_logit(probabilities[key][:, None], shift)
    return daily


def _expected_volumes(rng: np.random.Generator, actions: pd.DataFrame, volumes: np.ndarray,
                      plants: list[dict], campaigns: pd.DataFrame, weekday: np.ndarray,
                      world: CampaignWorld) -> np.ndarray:
    """Expected messages created per action and day: base volume, weekday, trend, bursts, noise."""
    n, days = len(actions), len(weekday)
    volumes = volumes.copy()
    position = {int(a): i for i, a in enumerate(actions["action_id"])}
    for plant in plants:  # planted actions send enough for a 30-day window to see them
        i = position[plant["action_id"]]
        volumes[i] = max(volumes[i], _PLANTED_VOLUME_FLOOR[plant["channel"]])
    low = rng.uniform(1.0 - world.volume_trend, 1.0, size=n)
    high = rng.uniform(1.0, 1.0 + world.volume_trend, size=n)
    expected = volumes[:, None] * _DOW_FACTOR[weekday][None, :] * np.linspace(low, high, days, axis=1)
    newsletter = set(campaigns.loc[campaigns["template"] == "newsletter", "campaign_id"])
    weekly = actions["campaign_id"].isin(newsletter).to_numpy()
    expected[weekly] *= np.where(weekday == _NEWSLETTER_WEEKDAY, 7.0, 0.0)[None, :]
    bursts = rng.random((n, days)) < world.burst_probability
    sizes = world.burst_size * np.exp(rng.normal(0.0, 0.3, size=(n, days)))
    expected = np.where(bursts, expected * np.maximum(sizes, 1.0), expected)
    if world.volume_noise_cv > 0:
        shape = 1.0 / world.volume_noise_cv ** 2
        expected = expected * rng.gamma(shape, 1.0 / shape, size=(n, days))
    return expected


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _shift_logit(p: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """expit(logit(p) + shift), keeping probabilities of exactly 0 at 0."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    moved = 1.0 / (1.0 + np.exp(-(logit + shift)))
    return np.where(p > 0, moved, 0.0)


def metrics_long(cube: np.ndarray, actions: pd.DataFrame, end_date: dt.date) -> pd.DataFrame:
    """Long frame campaign_id, action_id, day, metric, value from the cube (every series, zeros too)."""
    n, s, d = cube.shape
    dates = np.array([end_date - dt.timedelta(days=d - 1 - i) for i in range(d)], dtype=object)
    return pd.DataFrame({
        "campaign_id": np.repeat(actions["campaign_id"].to_numpy(), s * d),
        "action_id": np.repeat(actions["action_id"].to_numpy(), s * d),
        "day": np.tile(dates, n * s),
        "metric": np.tile(np.repeat(np.array(SERIES, dtype=object), d), n),
        "value": cube.reshape(-1),
    })


def _day_start(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
