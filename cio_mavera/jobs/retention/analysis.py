"""Job 3 aggregates for the report: events per metric, opt-out rates by campaign and by audience."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd


def event_counts(events: pd.DataFrame) -> dict[str, int]:
    """Events per metric (all channels)."""
    return {str(k): int(v) for k, v in events["metric"].value_counts().items()}

def _rates(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    counts = pd.crosstab(frame[by], frame["metric"])
    for metric in ("delivered", "unsubscribed", "spammed", "bounced", "sent"):
        if metric not in counts:
            counts[metric] = 0
    out = counts[["sent", "delivered", "bounced", "unsubscribed", "spammed"]].copy()
    delivered = out["delivered"].where(out["delivered"] > 0)
    out["unsubscribe_rate"] = out["unsubscribed"] / delivered
    out["spam_rate"] = out["spammed"] / delivered
    out["opt_out_rate"] = (out["unsubscribed"] + out["spammed"]) / delivered
    return out


def campaign_rates(events: pd.DataFrame, campaign_names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Per campaign: sent, delivered, bounces, unsubscribes, complaints and their rates per delivered."""
    scoped = events[events["campaign_id"].notna()].copy()
    if scoped.empty:
        return pd.DataFrame(columns=["campaign", "sent", "delivered", "bounced", "unsubscribed", "spammed",
                                     "unsubscribe_rate", "spam_rate", "opt_out_rate"])
    scoped["campaign_id"] = scoped["campaign_id"].astype("int64")
    out = _rates(scoped, "campaign_id").sort_values("opt_out_rate", ascending=False)
    names = campaign_names or {}
    out.insert(0, "campaign", [f"{names.get(int(c), 'campaign')} (#{int(c)})" for c in out.index])
    return out


def cluster_rates(events: pd.DataFrame, valuable_plans: Sequence[str]) -> pd.DataFrame:
    """Per audience cluster: people, share on valuable plans, deliveries and opt-out rates."""
    scoped = events[events["cluster"].notna()].copy()
    if scoped.empty:
        return pd.DataFrame()
    out = _rates(scoped, "cluster")
    people = scoped.groupby("cluster")["cio_id"].nunique()
    wanted = {p.lower() for p in valuable_plans}
    valuable = scoped.drop_duplicates("cio_id").assign(
        v=lambda f: f["plan"].astype("string").str.lower().isin(wanted).fillna(False))
    names = scoped.groupby("cluster")["cluster_name"].first()
    out.insert(0, "audience", [f"{names.get(c)} ({int(c) + 1})" for c in out.index])
    out.insert(1, "people", people.reindex(out.index).to_numpy())
    out.insert(2, "valuable_share", valuable.groupby("cluster")["v"].mean().reindex(out.index).to_numpy())
    return out.sort_values("opt_out_rate", ascending=False)


