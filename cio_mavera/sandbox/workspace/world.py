"""How messy the synthetic world is: the knobs of the sandbox workspace, realistic by default.

Real workspaces are heterogeneous and noisy (messages differ from each other, daily counts are
over-dispersed, customer attributes overlap and go missing, event streams have cycles and bursts),
so that is the default. `World.clean()` keeps the old, tidy world as a knob for unit tests. Every
knob is recorded in the workspace's truth (`/__sandbox__/truth`), settable in `SandboxConfig` and on
`cio-mavera sandbox serve --world NAME --knob part.name=value`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from cio_mavera.errors import InvalidParameter

WORLD_NAMES = ("realistic", "clean")


@dataclass(frozen=True)
class CampaignWorld:
    """Knobs of campaigns, messages and their daily metric counts (job 1's data).

    Each message's true rates scatter around its channel's (logit-normal), each message-day has
    its own rate on top (day effects, a weekly cycle, a slow drift), and daily volumes are noisy
    with occasional send bursts. Planted underperformers sit `plant_spread_sds` spreads below
    their channel's typical message on the logit scale, and at least `plant_min_relative_drop`
    below it (which alone decides them in the clean world, where messages do not differ).
    """

    heterogeneity_cv: float = 0.25  # messages' spread around the channel, as a share of its rate
    day_effect_sd: float = 0.15  # each message-day's rate: logit-normal around the message's
    weekly_rate_amplitude: float = 0.08  # rates' weekly cycle on the logit scale (best on Tuesdays)
    rate_drift_sd: float = 0.1  # each message's rates drift by this much (logit) over the history
    volume_noise_cv: float = 0.25  # daily volume: gamma-Poisson around its expectation
    volume_trend: float = 0.15  # volumes trend from up to this much lower to up to this much higher
    burst_probability: float = 0.03  # chance that a message-day is a send burst
    burst_size: float = 5.0  # a burst multiplies that day's volume by about this much
    plant_spread_sds_low: float = 4.0  # planted underperformers lie this many spreads below...
    plant_spread_sds_high: float = 6.0  # ...up to this many (drawn uniformly per plant)
    plant_min_relative_drop: float = 0.45  # and at least 45-55% below the channel's typical rate
    hostile_copy: bool = False  # names and copy that try to become markup in reports (catalog.hostile_copy)

    @classmethod
    def clean(cls) -> CampaignWorld:
        """Identical rates per channel, plain binomial counts, smooth volumes: only plants differ."""
        return cls(heterogeneity_cv=0.0, day_effect_sd=0.0, weekly_rate_amplitude=0.0,
                   rate_drift_sd=0.0, volume_noise_cv=0.0, burst_probability=0.0)


@dataclass(frozen=True)
class CustomerWorld:
    """Knobs of customers and their attributes (job 2's data).

    Attributes come from three integrations (billing, product usage, CRM), each present or absent
    for a person as a whole group; the clusters overlap on every attribute.
    """

    category_overlap: float = 0.3  # share of each category drawn from everyone's mix, not the cluster's
    spread: float = 1.6  # multiplies each cluster's spread of numbers on the log scale
    within_cluster_correlation: float = 0.5  # account size and engagement shared by related numbers
    heavy_tail_df: float = 3.0  # Student-t degrees of freedom of numbers' log-scale noise (0 = normal)
    outlier_share: float = 0.01  # numbers replaced by absurd values (unit mistakes, -1 sentinels)
    missing_billing: float = 0.25  # people without billing attributes (plan, mrr, seats)
    missing_product: float = 0.4  # without product-usage attributes (logins, projects, messages...)
    missing_crm: float = 0.55  # without CRM attributes (industry, company size, lifecycle stage...)
    messy_strings: float = 0.3  # category values re-spelt ("Pro", "pro ", "PRO", "Trial Expired")
    formatted_numbers: float = 0.3  # numbers written "1,200", "15 seats", "$99.00"
    mixed_booleans: bool = True  # booleans written true/false, yes/no, 1/0, Y/N, True/False
    junk_attributes: bool = True  # a constant, a near-unique id, free text, high-cardinality codes
    # Category levels written as markup (<script>, javascript: links, **bold**, $x$), so reports
    # are tested with hostile copy reaching cluster names, profiles and persona answers. Off by default.
    hostile_values: bool = False
    # Personal data in innocently named attributes (planted_pii.py): `assistant_name` holding other
    # customers' full names, `notes` with obfuscated emails, odd phone forms, addresses and ids.
    planted_pii: bool = True

    @classmethod
    def clean(cls) -> CustomerWorld:
        """Nearly disjoint clusters, every attribute present and tidily typed."""
        return cls(category_overlap=0.0, spread=1.0, within_cluster_correlation=0.0,
                   heavy_tail_df=0.0, outlier_share=0.0, missing_billing=0.0, missing_product=0.0,
                   missing_crm=0.0, messy_strings=0.0, formatted_numbers=0.0, mixed_booleans=False,
                   junk_attributes=False, planted_pii=False)


@dataclass(frozen=True)
class StreamWorld:
    """Knobs of the reporting-webhook stream (job 3's data).

    Sends follow daily and weekly cycles, the weekly digest goes out in one burst, one-off
    broadcasts send to much of the list within hours and reach colder people, campaigns and
    audiences differ in how readily they opt out (some campaigns several times more than the
    rest, always), and each campaign's rate wobbles from day to day. The planted spike is an
    excess on top of its own campaign's and audience's rate (`sandbox/workspace/stream_plan.py`).
    """

    daily_cycle: float = 0.7  # hour-of-day swing of send volume: 1 +- this (0 = flat)
    weekly_cycle: float = 0.4  # weekend send volume is this much below weekdays
    digest_burst_hours: float = 3.0  # the weekly digest campaign sends within this many hours (0 = spread)
    broadcasts: int = 2  # one-off broadcasts (newsletters) in the stream's two weeks
    broadcast_share: float = 0.1  # each broadcast's share of the stream's deliveries
    broadcast_hours: float = 2.0  # each broadcast goes out within this many hours
    broadcast_opt_out_factor: float = 2.5  # mass sends reach colder people: their opt-out rate x this
    campaign_opt_out_cv: float = 0.6  # campaigns' baseline opt-out rates: log-normal around the channel's
    high_opt_out_campaigns: int = 1  # campaigns whose audience always opts out several times more...
    high_opt_out_factor: float = 5.0  # ...this many times their drawn rate
    audience_opt_out_cv: float = 0.3  # audience clusters' opt-out propensity: log-normal around 1
    daily_rate_cv: float = 0.25  # each campaign-day's opt-out rate: gamma around the campaign's

    @classmethod
    def clean(cls) -> StreamWorld:
        """The flat stream: uniform send times, one opt-out rate per channel, no broadcasts."""
        return cls(daily_cycle=0.0, weekly_cycle=0.0, digest_burst_hours=0.0, broadcasts=0,
                   campaign_opt_out_cv=0.0, high_opt_out_campaigns=0, audience_opt_out_cv=0.0,
                   daily_rate_cv=0.0)


@dataclass(frozen=True)
class World:
    """The three parts of a workspace's world, and the name of the preset they started from."""

    name: str = "realistic"
    campaigns: CampaignWorld = field(default_factory=CampaignWorld)
    customers: CustomerWorld = field(default_factory=CustomerWorld)
    stream: StreamWorld = field(default_factory=StreamWorld)

    @classmethod
    def clean(cls) -> World:
        """The tidy world: identical rates per channel, disjoint clusters, flat streams."""
        return cls("clean", CampaignWorld.clean(), CustomerWorld.clean(), StreamWorld.clean())

    @classmethod
    def named(cls, name: str) -> World:
        """The preset called `name` ("realistic" or "clean")."""
        if name not in WORLD_NAMES:
            raise InvalidParameter(f"unknown world {name!r}; choose one of {', '.join(WORLD_NAMES)}")
        return cls.clean() if name == "clean" else cls()

    def with_knobs(self, knobs: dict[str, Any]) -> World:
        """A copy with knobs replaced, e.g. {"campaigns.heterogeneity_cv": 0.3}."""
        parts: dict[str, dict[str, Any]] = {}
        for dotted, value in knobs.items():
            part, _, name = dotted.partition(".")
            if part not in ("campaigns", "customers", "stream") or not name:
                raise InvalidParameter(f"knob {dotted!r} must be campaigns.NAME, customers.NAME or "
                                       "stream.NAME")
            known = {f.name: f for f in fields(getattr(self, part))}
            if name not in known:
                raise InvalidParameter(f"unknown knob {dotted!r}; {part} has "
                                       f"{', '.join(sorted(known)) or 'no knobs'}")
            parts.setdefault(part, {})[name] = _coerce(value, getattr(getattr(self, part), name), dotted)
        replaced = {part: dataclasses.replace(getattr(self, part), **values)
                    for part, values in parts.items()}
        return dataclasses.replace(self, **replaced)

    def to_dict(self) -> dict[str, Any]:
        """Every knob, for the truth."""
        return dataclasses.asdict(self)


def _coerce(value: Any, current: Any, name: str) -> Any:
    """`value` (often a command-line string) as the type of the knob's current value."""
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        raise InvalidParameter(f"knob {name} needs a {type(current).__name__}, got {value!r}") from None
    raise InvalidParameter(f"knob {name} cannot be set from the command line")
