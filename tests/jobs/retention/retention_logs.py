"""Synthetic enriched event logs for job 3's trigger tests: deliveries with ids and the opt-outs they cause."""

from __future__ import annotations

import numpy as np
import pandas as pd

HOUR = 3600
DAY = 86400
T0 = 1_790_000_000 // (7 * DAY) * (7 * DAY) + 4 * DAY  # a Monday, 00:00 UTC
CLUSTER_NAMES = ("Power users", "Small teams", "Dormant trials", "Growing accounts")


class Log:
    """Builds an enriched event log: every delivery is sent, delivered, and maybe opted out of."""

    def __init__(self, seed: int, days: int = 14, clusters: int = 4, valuable_share: float = 0.3) -> None:
        self.rng = np.random.default_rng(seed)
        self.days, self.clusters, self.valuable_share = days, clusters, valuable_share
        self.frames: list[pd.DataFrame] = []
        self.next_id = 0

    @property
    def end(self) -> int:
        """Where the log's period ends."""
        return T0 + self.days * DAY

    def send(self, n: int, rate: float | np.ndarray, *, campaign: int | None = None, newsletter: int | None = None,
             start_hour: float = 0, hours: float | None = None, times: np.ndarray | None = None,
             cluster_rates: dict[int, float] | None = None, delay_s: float = 5400) -> Log:
        """`n` deliveries of one source at opt-out `rate` (per cluster in `cluster_rates`), uniform in time
        over [start_hour, start_hour + hours) unless `times` are given; opt-outs come `delay_s` later on average."""
        rng = self.rng
        if times is None:
            first = T0 + start_hour * HOUR
            last = self.end if hours is None else first + hours * HOUR
            times = rng.uniform(first, last, n)
        times = np.asarray(times, dtype=float)
        n = len(times)
        cluster = rng.integers(0, self.clusters, n)
        p = np.full(n, rate, dtype=float) if np.isscalar(rate) else np.asarray(rate, float)
        for c, r in (cluster_rates or {}).items():
            p = np.where(cluster == c, r, p)
        ids = [f"d{self.next_id + i}" for i in range(n)]
        self.next_id += n
        valuable = rng.random(n) < self.valuable_share
        people = rng.integers(0, 10_000_000, n)
        base = pd.DataFrame({
            "delivery_id": ids, "campaign_id": campaign, "newsletter_id": newsletter,
            "cluster": cluster, "cluster_name": [CLUSTER_NAMES[c % len(CLUSTER_NAMES)] for c in cluster],
            "plan": np.where(valuable, "pro", "free"), "cio_id": [f"c{x}" for x in people],
            "object_type": "email"})
        sent = base.assign(metric="sent", timestamp=times.astype(np.int64))
        delivered = base.assign(metric="delivered", timestamp=(times + 10).astype(np.int64))
        out = rng.random(n) < p
        opted = base[out].assign(metric="unsubscribed",
                                 timestamp=(times[out] + 10 + rng.exponential(delay_s, out.sum())).astype(np.int64))
        self.frames += [sent, delivered, opted]
        return self

    def frame(self) -> pd.DataFrame:
        """The log as the enrichment would hand it over (opt-outs after the end have not happened yet)."""
        frame = pd.concat(self.frames, ignore_index=True)
        frame = frame[frame["timestamp"] < self.end].reset_index(drop=True)
        frame["event_id"] = [f"e{i}" for i in range(len(frame))]
        frame["cluster"] = frame["cluster"].astype("Int64")
        frame["campaign_id"] = frame["campaign_id"].astype("Int64")
        frame["newsletter_id"] = frame["newsletter_id"].astype("Int64")
        frame["failure_message"] = None
        return frame


def steady(seed: int, campaigns: int = 6, per_day: int = 60, rate: float = 0.004, days: int = 14) -> Log:
    """`campaigns` campaigns sending `per_day` messages a day at one steady opt-out rate."""
    log = Log(seed, days)
    for c in range(1, campaigns + 1):
        log.send(per_day * days, rate, campaign=c)
    return log
