"""Job 1 data: the report window, the channel filter and the campaign frames from the cache."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cio_mavera import datasets
from cio_mavera.connect import Connection
from cio_mavera.errors import CioMaveraError
from cio_mavera.progress import Progress

JOB = "campaign-messaging"
CHANNEL_ALIASES = {"sms": "twilio", "text": "twilio", "in-app": "in_app"}

class JobInputError(CioMaveraError, ValueError):
    """A job parameter is out of range or inconsistent (raised before any request)."""



@dataclass
class CampaignData:
    """What job 1 analyses: campaigns, actions and their metrics in one window, plus provenance."""

    campaigns: pd.DataFrame
    actions: pd.DataFrame
    metrics: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    channel: str
    campaign_ids: list[int]
    mode: str
    workspace: str
    freshness: dict[str, str | None] = field(default_factory=dict)
    requests: int = 0

    @property
    def days(self) -> int:
        return int((self.end - self.start) / pd.Timedelta(days=1))


def resolve_window(days: int | None = 30, start: Any = None, end: Any = None,
                   today: dt.date | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) in UTC: explicit start/end, else the `days` whole days up to and including today."""
    if start is not None and end is not None:
        lo, hi = _utc(start), _utc(end)
    elif start is not None or end is not None:
        if not days or days < 1:
            raise JobInputError("with only one of start/end, days must be a positive number")
        if start is not None:
            lo = _utc(start)
            hi = lo + pd.Timedelta(days=days)
        else:
            hi = _utc(end)
            lo = hi - pd.Timedelta(days=days)
    else:
        if not days or days < 1:
            raise JobInputError(f"days must be a positive whole number, got {days!r}")
        today = today or dt.datetime.now(dt.UTC).date()
        hi = pd.Timestamp(today, tz="UTC") + pd.Timedelta(days=1)
        lo = hi - pd.Timedelta(days=int(days))
    if lo >= hi:
        raise JobInputError(f"start ({lo:%Y-%m-%d}) must be before end ({hi:%Y-%m-%d})")
    return lo, hi


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def normalise_channel(channel: str | None) -> str:
    """The Customer.io action type for a channel name ("all", "email", "push", "sms" -> "twilio")."""
    name = (channel or "all").strip().lower()
    return CHANNEL_ALIASES.get(name, name)


def load_campaign_data(conn: Connection, *, days: int | None = 30, start: Any = None,
                       end: Any = None, channel: str = "all",
                       campaign_ids: Iterable[int] = (), refresh: bool = False,
                       progress: Progress | None = None) -> CampaignData:
    """Campaigns, actions and daily action metrics for the window, through the parquet cache.

    Metrics are pulled for every campaign so each channel's baseline is the whole workspace; the
    channel and campaign filters apply to which messages are reported (see `analyse`).
    `progress(done, total)` is told as campaigns' metrics are pulled (`progress.progress_bar`).
    """
    lo, hi = resolve_window(days, start, end, today=conn.today)
    channel = normalise_channel(channel)
    wanted = sorted({int(c) for c in campaign_ids or ()})
    # metrics() pulls actions and campaigns itself (refreshing them too when asked), so read them after.
    metrics = datasets.metrics(conn, lo, hi, res="days", tz="UTC", refresh=refresh, progress=progress)
    campaigns = datasets.campaigns(conn)
    actions = datasets.actions(conn)
    if channel != "all" and channel not in set(actions["channel"]):
        raise JobInputError(f"channel {channel!r} has no messages in this workspace; choose one of "
                            f"all, {', '.join(sorted(set(actions['channel'])))}")
    unknown = sorted(set(wanted) - set(campaigns["campaign_id"].astype(int)))
    if unknown:
        raise JobInputError(f"campaign_ids {unknown} are not in this workspace")
    freshness = {name: _iso(datasets.pulled_at(df))
                 for name, df in (("campaigns", campaigns), ("actions", actions), ("metrics", metrics))}
    requests = sum(int(df.attrs.get("requests", 0)) for df in (campaigns, actions, metrics))
    return CampaignData(campaigns, actions, metrics, lo, hi, channel, wanted, conn.mode,
                        conn.workspace, freshness, requests)


def _iso(value: Any) -> str | None:
    return None if value is None else pd.Timestamp(value).isoformat()


