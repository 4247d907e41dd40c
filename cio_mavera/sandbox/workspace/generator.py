"""The synthetic Customer.io workspace behind the sandbox, generated from a seed with planted truth.

Deterministic given (seed, customers, end_date, days). Campaigns, actions and metrics depend only on
(seed, end_date, days), so they are the same for 5,000 or 1,000,000 customers.

Rates (the names in `RATE_METRICS`, used by `truth`), from the v2 series summed over a window:

    delivery_rate        = delivered / sent
    bounce_rate          = bounced / sent
    human_open_rate      = human_opened / (delivered - open_untracked)
    human_click_rate     = human_clicked / (delivered - link_untracked)
    click_to_open_rate   = human_clicked / human_opened
    conversion_rate      = converted / delivered
    unsubscribe_rate     = unsubscribed / delivered
    spam_complaint_rate  = spammed / delivered

Channels without a thing have zeros in its series: SMS (twilio) has no opens (human_open_rate is 0
for every SMS action and click_to_open_rate is 0/0, undefined), push has no unsubscribes or spam
complaints, only email has prefetch opens, untracked opens/links, deferrals and consent changes;
only SMS has replies. For push, opened == human_opened and clicked == human_clicked.

Planted structure (`truth`):

- `underperformers`: three actions (one email at least) whose true human_click_rate or
  conversion_rate lies far below their channel's typical message: `spread_sds` logit spreads
  below it (`CampaignWorld.plant_spread_sds_low..high`) and at least 45-55% below it in relative
  terms (`underperformer_details` says how far out each one ended up, in spreads and as a relative
  drop). Every other message's rates are drawn around the channel's (`truth["baselines"]` is the
  typical message, `message_rates` every message's own, `world.campaigns` the knobs), so ordinary
  messages differ too; in the clean world they all share the channel's rates exactly. The drop
  changes one generating probability and nothing else, with one unavoidable consequence: a
  human-click drop on a channel with opens also lowers click_to_open_rate by the same factor.
  Those co-findings are listed in `also_low`; in the clean world a test of all RATE_METRICS in the
  "worse" direction should flag exactly `underperformers` + `also_low`. Counts are plain binomial
  draws (nothing shrinks noise below binomial), and the last day stops at `end`.
- `clusters`: K=4 latent customer groups (`CLUSTER_NAMES`), also in `Workspace.cluster_labels`
  (never a column of `customers`, so routes cannot leak it).
- `spike`: the plan for the webhook stream (job 3): a 24-48 h window in the last 7 days in which
  one email action's recipients in one cluster unsubscribe (and complain) far more often: an
  excess over what that campaign and cluster do anyway, recorded with that baseline and the ratio
  (`stream_plan`). The daily metrics do NOT contain the spike, so job 1's truth stays exactly the
  underperformers. `stream`: the rest of the stream's plan (campaign and audience opt-out
  multipliers, the steadily high campaigns, one-off broadcasts).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .attribute_mess import ATTRIBUTE_GROUPS
from .campaigns import (
    build_campaigns,
    choose_plants,
    generate_metric_cube,
    message_probabilities,
    message_rates,
    metrics_long,
    true_baselines,
)
from .catalog import hostile_copy
from .customers import CLUSTER_NAMES, PLANS, K, generate_customers
from .stream_plan import plan_stream
from .world import World

RATE_METRICS: tuple[str, ...] = (
    "delivery_rate", "human_open_rate", "human_click_rate", "click_to_open_rate", "conversion_rate",
    "unsubscribe_rate", "bounce_rate", "spam_complaint_rate",
)
# rate -> (numerator series, denominator series, series subtracted from the denominator or None)
RATE_DEFINITIONS: dict[str, tuple[str, str, str | None]] = {
    "delivery_rate": ("delivered", "sent", None),
    "human_open_rate": ("human_opened", "delivered", "open_untracked"),
    "human_click_rate": ("human_clicked", "delivered", "link_untracked"),
    "click_to_open_rate": ("human_clicked", "human_opened", None),
    "conversion_rate": ("converted", "delivered", None),
    "unsubscribe_rate": ("unsubscribed", "delivered", None),
    "bounce_rate": ("bounced", "sent", None),
    "spam_complaint_rate": ("spammed", "delivered", None),
}

# key: (name, description, type); members are computed in _segment_members.
SEGMENT_SPECS: dict[str, tuple[str, str, str]] = {
    "all": ("All customers", "Everyone in the workspace.", "dynamic"),
    "paying": ("Paying customers", "mrr > 0.", "dynamic"),
    "trial": ("Trial users", "trial_user is true.", "dynamic"),
    "enterprise": ("Enterprise accounts", "plan is enterprise.", "dynamic"),
    "dormant": ("Dormant 60d", "last_seen_at more than 60 days ago.", "dynamic"),
    "beta": ("Beta testers", "Hand-picked early-access group.", "manual"),
    "legacy": ("Legacy import (empty)", "Manual segment from an old import; nobody is in it.", "manual"),
}
_BETA_SIZE = 300
_DAY = 86400


@dataclass(eq=False)
class Workspace:
    """A generated workspace: Customer.io-shaped tables plus the ground truth of what was planted."""

    seed: int
    site_id: str
    workspace_id: int
    end: dt.datetime  # nothing in the workspace happens at or after this instant (UTC)
    end_date: dt.date  # the last day with metrics (the day `end` falls in, maybe partly)
    days: int
    world: World
    campaigns: pd.DataFrame
    actions: pd.DataFrame
    metrics: pd.DataFrame
    segments: pd.DataFrame
    segment_members: dict[int, np.ndarray]
    customers: pd.DataFrame
    truth: dict
    cluster_labels: np.ndarray = field(repr=False)
    metric_cube: np.ndarray = field(repr=False)  # (actions, len(SERIES), days), rows as in `actions`
    _lookup: dict[str, pd.Index] = field(default_factory=dict, repr=False)

    @property
    def first_day(self) -> dt.date:
        """The oldest day with metrics."""
        return self.end_date - dt.timedelta(days=self.days - 1)


def generate_workspace(seed: int = 7, customers: int = 5000, *,
                       end: dt.datetime | dt.date | None = None, days: int = 120,
                       world: World | None = None) -> Workspace:
    """Generate the workspace for this seed, `end` and world (deterministic in all four).

    `end` is when the workspace's history stops: a datetime (UTC), or a date meaning the end of that
    day. It defaults to the start of the current hour, so nothing lies in the future; tests pin it.
    """
    if customers < 1 or days < 1:
        raise ValueError(f"customers and days must be positive, got customers={customers}, days={days}")
    end = workspace_end(end)
    end_date = (end - dt.timedelta(microseconds=1)).date()
    world = world or World()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    rng_campaigns, rng_metrics, rng_customers, rng_segments, rng_spike = streams
    anchor = _day_start(end_date)  # customers' timestamps stay before the last metrics day starts

    segment_ids = _segment_ids(rng_segments)
    campaigns, actions, volumes = build_campaigns(rng_campaigns, end_date, days, segment_ids)
    if world.campaigns.hostile_copy:  # text only: ids, plants and metrics stay the same
        campaigns, actions = hostile_copy(campaigns, actions)
    plants = choose_plants(rng_campaigns, actions, campaigns, world.campaigns)
    probabilities, plant_details = message_probabilities(rng_metrics, actions, plants, world.campaigns)
    cube = generate_metric_cube(rng_metrics, actions, volumes, probabilities, plants, campaigns, end, days,
                                world.campaigns)
    people, labels, facts = generate_customers(rng_customers, customers, anchor, seed, world.customers)
    segments, members = _segments(rng_segments, facts, segment_ids, anchor)
    spike = _plan_spike(rng_spike, campaigns, actions, volumes, plants, end)
    stream = plan_stream(rng_spike, campaigns, actions, volumes, spike, world.stream, end)
    spike = {**spike, **stream.pop("spike")}
    truth = {**_truth(plant_details, actions, people, labels, spike), "stream": stream,
             "message_rates": message_rates(actions, probabilities),
             "end": end.isoformat(), "world": world.to_dict()}
    return Workspace(
        seed=seed, site_id=f"sbx-site-{seed}", workspace_id=80_000 + (seed * 7919) % 20_000,
        end=end, end_date=end_date, days=days, world=world, campaigns=campaigns.drop(columns="template"),
        actions=actions, metrics=metrics_long(cube, actions, end_date), segments=segments,
        segment_members=members, customers=people, truth=truth, cluster_labels=labels,
        metric_cube=cube,
    )


# --- segments, spike, truth -------------------------------------------------------------------


def _segment_ids(rng: np.random.Generator) -> dict[str, int]:
    ids = np.cumsum(rng.integers(1, 4, size=len(SEGMENT_SPECS))) + int(rng.integers(1, 30))
    return {key: int(i) for key, i in zip(SEGMENT_SPECS, ids, strict=True)}


def _segments(rng: np.random.Generator, people: pd.DataFrame, ids: dict[str, int],
              anchor: int) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    n = len(people)
    masks = {
        "all": np.ones(n, dtype=bool),
        "paying": people["mrr"].to_numpy() > 0,
        "trial": people["trial_user"].to_numpy(),
        "enterprise": np.asarray(people["plan"].cat.codes) == PLANS.index("enterprise"),
        "dormant": people["last_seen_at"].to_numpy() < anchor - 60 * _DAY,
    }
    members = {ids[key]: np.flatnonzero(mask) for key, mask in masks.items()}
    members[ids["beta"]] = np.sort(rng.choice(n, size=min(_BETA_SIZE, max(1, n // 10)), replace=False))
    members[ids["legacy"]] = np.array([], dtype=np.int64)
    rows = []
    for key, (name, description, kind) in SEGMENT_SPECS.items():
        created = anchor - int(rng.integers(200, 900)) * _DAY
        updated = created + int(rng.integers(0, anchor - created))
        rows.append({"segment_id": ids[key], "name": name, "description": description, "type": kind,
                     "state": "finished", "created_at": created, "updated_at": updated})
    return pd.DataFrame(rows), {k: v.astype(np.int64) for k, v in members.items()}


def _plan_spike(rng: np.random.Generator, campaigns: pd.DataFrame, actions: pd.DataFrame,
                volumes: np.ndarray, plants: list[dict], end: dt.datetime) -> dict:
    excluded = {p["campaign_id"] for p in plants}
    excluded |= set(campaigns.loc[campaigns["template"] == "newsletter", "campaign_id"])  # weekly sends
    email = actions.assign(volume=volumes)
    email = email[(email["channel"] == "email") & ~email["campaign_id"].isin(excluded)]
    campaign_id = int(rng.choice(np.unique(email["campaign_id"])))
    action = email[email["campaign_id"] == campaign_id].sort_values("volume").iloc[-1]
    candidates = [i for i, name in enumerate(CLUSTER_NAMES) if name != "dormant_trials"]
    end_ts = int(end.timestamp())
    start = end_ts - int(rng.integers(48, 6 * 24 + 1)) * 3600
    length = int(rng.integers(24, 49)) * 3600
    return {"campaign_id": campaign_id, "action_id": int(action["action_id"]),
            "cluster": int(rng.choice(candidates)), "metric": "unsubscribed", "also": ["spammed"],
            "start": start, "end": min(start + length, end_ts)}


def _truth(plants: list[dict], actions: pd.DataFrame, people: pd.DataFrame, labels: np.ndarray,
           spike: dict) -> dict:
    baselines = true_baselines()
    keys = ("campaign_id", "action_id", "metric")
    also_low = [{"campaign_id": p["campaign_id"], "action_id": p["action_id"], "metric": "click_to_open_rate"}
                for p in plants
                if p["metric"] == "human_click_rate" and baselines[p["channel"]]["click_to_open_rate"]]
    sizes = np.bincount(labels, minlength=K)
    return {
        "underperformers": [{k: p[k] for k in keys} for p in plants],
        "also_low": also_low,
        "underperformer_details": plants,  # where each ended up: rates, relative drop, spreads out
        "baselines": baselines,
        "rate_definitions": {k: list(v) for k, v in RATE_DEFINITIONS.items()},
        "clusters": {
            "k": K,
            "names": list(CLUSTER_NAMES),
            "sizes": [int(s) for s in sizes],
            "assignments": dict(zip(people["cio_id"].tolist(), labels.tolist(), strict=True)),
            "attribute_groups": {g: list(c) for g, c in ATTRIBUTE_GROUPS.items()},
        },
        "spike": spike,
    }


def _day_start(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def workspace_end(end: dt.datetime | dt.date | None = None) -> dt.datetime:
    """The workspace's end instant (UTC): a date means the end of that day; None the current hour."""
    if end is None:
        now = dt.datetime.now(dt.UTC)
        return now.replace(minute=0, second=0, microsecond=0)
    if isinstance(end, dt.datetime):
        return end.replace(tzinfo=dt.UTC) if end.tzinfo is None else end.astimezone(dt.UTC)
    return dt.datetime(end.year, end.month, end.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
