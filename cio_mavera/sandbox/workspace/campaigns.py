"""Sandbox campaigns, actions and their daily v2 metric counts, with planted underperformers.

Every action of a channel shares the channel's true rates (`CHANNEL_PARAMS`); only the planted
actions differ, on exactly one generating probability (human clicks or conversions). Counts are
drawn as a chain of (under-dispersed) binomials, so they are consistent by construction (see `generate_metric_cube`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .catalog import CAMPAIGNS, CampaignTemplate

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

# Pure binomial noise makes a BH-corrected test over ~250 (action, rate) pairs flag a null pair in
# ~11% of workspaces (measured over 160 seed/end-date/window combinations), so "exactly the planted
# set" would be a coin toss for tests. Counts are binomial draws shrunk towards their mean to this
# share of the binomial variance: rates stay exact in expectation, daily series stay visibly noisy,
# and the flagged set is the planted set. 1.0 restores plain binomial noise.
NOISE_VARIANCE_FACTOR = 0.35

# Daily messages created per action: log-uniform range, and the floor for planted actions so a
# 30-day window detects a ~50% drop with near-certain power.
_VOLUME_RANGE = {"email": (500.0, 3000.0), "push": (400.0, 2000.0), "twilio": (200.0, 700.0)}
_PLANTED_VOLUME_FLOOR = {"email": 1800.0, "push": 1800.0, "twilio": 700.0}
_PLANT_METRICS = ("human_click_rate", "conversion_rate")
_PLANT_PARAM = {"human_click_rate": "human_clicked", "conversion_rate": "converted"}
_DOW_FACTOR = np.array([1.05, 1.1, 1.1, 1.05, 1.0, 0.8, 0.75])  # Monday first
_NEWSLETTER_WEEKDAY = 1  # the weekly digest goes out on Tuesdays


def true_baselines() -> dict[str, dict[str, float | None]]:
    """Expected value of every RATE_METRIC per channel for a non-planted action (None: undefined)."""
    out: dict[str, dict[str, float | None]] = {}
    for channel, p in CHANNEL_PARAMS.items():
        opens = p["human_opened"] > 0
        cto = (p["human_clicked"] * (1 - p["link_untracked"]) / (p["human_opened"] * (1 - p["open_untracked"]))
               if opens else None)
        out[channel] = {
            "delivery_rate": 1 - p["bounced"],
            "human_open_rate": p["human_opened"] if opens else 0.0,
            "human_click_rate": p["human_clicked"],
            "click_to_open_rate": cto,
            "conversion_rate": p["converted"],
            "unsubscribe_rate": p["unsubscribed"],
            "bounce_rate": p["bounced"],
            "spam_complaint_rate": p["spammed"],
        }
    return out


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


def choose_plants(rng: np.random.Generator, actions: pd.DataFrame, campaigns: pd.DataFrame) -> list[dict]:
    """Three planted underperformers: one email, two from channels with >= 4 actions, distinct campaigns."""
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
                       "relative_drop": round(float(rng.uniform(0.45, 0.55)), 3)})
    return plants


def generate_metric_cube(rng: np.random.Generator, actions: pd.DataFrame, volumes: np.ndarray,
                         plants: list[dict], campaigns: pd.DataFrame, end_date: dt.date,
                         days: int) -> np.ndarray:
    """Daily counts, shape (actions, len(SERIES), days), oldest day first.

    Chain per action and day: created ~ Poisson; suppressed, failed, undeliverable are taken out of
    created and the rest is sent; bounced comes out of sent and the rest is delivered. Opens and
    clicks are drawn from the tracked part of delivered (delivered - open_untracked, resp.
    delivered - link_untracked); prefetch opens only from people who did not open as humans, so
    opened = human_opened + prefetch_opened and clicked = human_clicked + machine_clicked.
    """
    n = len(actions)
    channels = actions["channel"].to_numpy()
    params = {key: np.array([CHANNEL_PARAMS[c][key] for c in channels])[:, None]
              for key in CHANNEL_PARAMS["email"]}
    volumes = volumes.copy()
    position = {int(a): i for i, a in enumerate(actions["action_id"])}
    for plant in plants:
        i = position[plant["action_id"]]
        key = _PLANT_PARAM[plant["metric"]]
        params[key] = params[key].copy()
        params[key][i, 0] *= 1 - plant["relative_drop"]
        volumes[i] = max(volumes[i], _PLANTED_VOLUME_FLOOR[plant["channel"]])

    dates = [end_date - dt.timedelta(days=days - 1 - d) for d in range(days)]
    weekday = np.array([d.weekday() for d in dates])
    trend = np.linspace(rng.uniform(0.85, 1.0, size=n), rng.uniform(1.0, 1.15, size=n), days, axis=1)
    expected = volumes[:, None] * _DOW_FACTOR[weekday][None, :] * trend
    newsletter = set(campaigns.loc[campaigns["template"] == "newsletter", "campaign_id"])
    weekly = actions["campaign_id"].isin(newsletter).to_numpy()
    expected[weekly] *= np.where(weekday == _NEWSLETTER_WEEKDAY, 7.0, 0.0)[None, :]

    def b(trials: np.ndarray, p: np.ndarray) -> np.ndarray:
        return _shrunk_binomial(rng, trials, p)

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
    # A human click implies an open; the cap never binds at these volumes but keeps the invariant.
    human_clicked = b(delivered - link_untracked, params["human_clicked"])
    has_opens = params["human_opened"][:, 0] > 0
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


def _shrunk_binomial(rng: np.random.Generator, trials: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binomial draws pulled towards their mean (variance x NOISE_VARIANCE_FACTOR), stochastically rounded.

    Mean n*p is kept exactly and the result stays within [0, n]; see NOISE_VARIANCE_FACTOR for why.
    """
    draws = rng.binomial(trials, p)
    mean = trials * p
    shrunk = mean + np.sqrt(NOISE_VARIANCE_FACTOR) * (draws - mean)
    return np.floor(shrunk + rng.random(shrunk.shape)).astype(np.int64)


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
