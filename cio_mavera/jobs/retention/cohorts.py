"""Job 3 cohorts: each delivery with its source and audience, and each opt-out dated by its delivery.

An unsubscribe is an answer to a message, so it belongs to the moment that message arrived: a
window's rate is "opt-outs from messages delivered in the window per message delivered in it".
Dating opt-outs by their own timestamp instead would push the opt-outs of a late-evening broadcast
into the next day's window, whose deliveries do not include it, and make an ordinary burst look
like a spike. Each event carries its `delivery_id`, so the match is exact; an opt-out whose
delivery is not in the log (it was delivered before the log starts, or it is an SMS STOP reply
without delivery fields) keeps its own timestamp.

Sources: a campaign (`campaign:<id>`), a newsletter (`newsletter:<id>`), an API-triggered broadcast
(`broadcast:<id>`), or, for outcomes without delivery fields, `<channel>:unattributed`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

__all__ = ["CHURN_METRICS", "OPT_OUT_METRICS", "deliveries", "is_hard_bounce", "outcomes", "per_value", "valuable"]

OPT_OUT_METRICS = ("unsubscribed", "spammed")  # one decision by the recipient to stop hearing from you
CHURN_METRICS = OPT_OUT_METRICS  # plus hard bounces
# Permanent failures: bad mailbox (SMTP 5.1.x / 550, 551, 553 "user unknown"), from reference §5.4's
# `failure_message`. Mailbox-full (5.2.2) and content blocks (5.7.1) are temporary or policy bounces.
_HARD_BOUNCE = (r"\b5\.1\.\d\b|\b55[013]\b.*(?:not exist|unknown|no such|invalid)|does not exist|"
                r"user unknown|no such user|invalid (?:recipient|address)")
_SOURCE_COLUMNS = (("campaign_id", "campaign"), ("newsletter_id", "newsletter"), ("broadcast_id", "broadcast"))


def is_hard_bounce(object_type: pd.Series, metric: pd.Series, failure_message: pd.Series) -> pd.Series:
    """True for permanent delivery failures: bad mailboxes (email) and invalid device tokens (push)."""
    bounced = metric.eq("bounced").to_numpy()
    hard = np.zeros(len(bounced), bool)
    if bounced.any():  # only bounces can be hard: the message text is read for those alone
        kind = object_type[bounced]
        text = failure_message[bounced].fillna("").astype(str)
        email_hard = kind.eq("email") & text.str.contains(_HARD_BOUNCE, case=False, regex=True)
        push_hard = kind.eq("push")  # §5.4: a push bounce means at least one invalid token
        hard[bounced] = (email_hard | push_hard).to_numpy()
    return pd.Series(hard, index=metric.index)


def per_value(values: pd.Series, transform: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`transform(values)`, computed once per distinct value when they are all strings.

    `transform` must work row by row and treat every missing value alike (None, NaN and pd.NA).
    """
    codes, distinct = pd.factorize(values)  # missing values get code -1
    if values.dtype != object or not all(isinstance(v, str) for v in distinct):
        return transform(values)
    done = transform(pd.Series([*distinct, None], dtype=object)).to_numpy()  # the last one: missing
    return pd.Series(done[codes], index=values.index, name=values.name)


def valuable(events: pd.DataFrame, plans: Iterable[str]) -> pd.Series:
    """True for events of people on one of `plans` (plan names compared lower-case, trimmed)."""
    wanted = {str(p).strip().lower() for p in plans}
    if "plan" not in events:
        return pd.Series(False, index=events.index)
    return per_value(events["plan"], lambda plan: plan.astype("string").str.strip().str.lower()
                     .isin(wanted).fillna(False).astype(bool))


def _source(events: pd.DataFrame) -> pd.Series:
    """`campaign:<id>`, `newsletter:<id>`, `broadcast:<id>` or `<channel>:unattributed` per event."""
    channel = events["object_type"].fillna("unknown").astype(str)
    codes, channels = pd.factorize(channel)  # a label per distinct value, not per row
    out = np.array([f"{c}:unattributed" for c in channels], dtype=object)[codes]
    for column, kind in reversed(_SOURCE_COLUMNS):  # a campaign id wins over the others
        if column in events:
            ids = pd.to_numeric(events[column], errors="coerce")
            has = ids.notna().to_numpy()
            if has.any():
                values, which = np.unique(ids[has].astype("int64").to_numpy(), return_inverse=True)
                out[has] = np.array([f"{kind}:{v}" for v in values], dtype=object)[which.ravel()]
    return pd.Series(out, index=events.index, name=channel.name, dtype=object)


def deliveries(events: pd.DataFrame) -> pd.DataFrame:
    """One row per delivery_id: source, campaign_id, channel, cio_id, cluster, plan, sent_at, delivered_at."""
    columns = ["delivery_id", "source", "campaign_id", "channel", "cio_id", "cluster", "cluster_name", "plan",
               "sent_at", "delivered_at"]
    if "delivery_id" not in events or events.empty:
        return pd.DataFrame(columns=columns)
    used = ["delivery_id", "timestamp", "metric", "object_type", "campaign_id", "cio_id", "cluster", "cluster_name",
            "plan", *(c for c, _ in _SOURCE_COLUMNS[1:] if c in events)]
    is_step = events["metric"].isin(("sent", "delivered", "bounced")) & events["delivery_id"].notna()
    if not is_step.any():
        return pd.DataFrame(columns=columns)
    if events["timestamp"].dtype != np.int64:
        return _deliveries_of(events.loc[is_step, used], columns)
    steps = np.flatnonzero(is_step.to_numpy())  # positions in events: only the rows and columns used are copied
    codes, _ = pd.factorize(events["delivery_id"].to_numpy()[steps])
    times = events["timestamp"].to_numpy()[steps]
    order = pd.Series(times).sort_values().index.to_numpy()  # the order sort_values("timestamp") gives
    _, at = np.unique(codes[order], return_index=True)
    rows = order[np.sort(at)]  # each delivery's first step, in that order
    first = events.iloc[steps[rows], [events.columns.get_loc(c) for c in used]].reset_index(drop=True)
    out = pd.DataFrame({"delivery_id": first["delivery_id"], "source": _source(first),
                        **{c: first[c] for c in ("campaign_id", "object_type", "cio_id", "cluster", "cluster_name",
                                                 "plan")}}).rename(columns={"object_type": "channel"})
    for metric, name in (("sent", "sent_at"), ("delivered", "delivered_at")):
        of = events["metric"].to_numpy()[steps] == metric
        earliest = np.full(codes.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(earliest, codes[of], times[of])
        seen = np.zeros(len(earliest), bool)
        seen[codes[of]] = True
        value, known = earliest[codes[rows]], seen[codes[rows]]
        out[name] = value if known.all() else np.where(known, value, np.nan)  # as a reindex would leave them
    # A delivery seen only as `delivered` (its `sent` fell before the log) was sent about then.
    out["sent_at"] = out["sent_at"].fillna(out["delivered_at"])
    return out[columns]


def _deliveries_of(steps: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`deliveries` by pandas' sort and group-by, for timestamps that are not int64 (missing ones too)."""
    first = steps.sort_values("timestamp").drop_duplicates("delivery_id")
    first = first.assign(source=_source(first))
    out = first.set_index("delivery_id")[["source", "campaign_id", "object_type", "cio_id", "cluster",
                                          "cluster_name", "plan"]].rename(columns={"object_type": "channel"})
    for metric, name in (("sent", "sent_at"), ("delivered", "delivered_at")):
        times = steps[steps["metric"] == metric].groupby("delivery_id")["timestamp"].min()
        out[name] = times.reindex(out.index)
    # A delivery seen only as `delivered` (its `sent` fell before the log) was sent about then.
    out["sent_at"] = out["sent_at"].fillna(out["delivered_at"])
    return out.reset_index()[columns]


def outcomes(events: pd.DataFrame, delivered: pd.DataFrame, metrics: Iterable[str],
             hard_bounces: bool = False) -> pd.DataFrame:
    """The outcome events (`metrics`, plus hard bounces if asked), each with `at`: its delivery's time.

    `at` is the delivery's delivered_at (sent_at for bounces, which never arrive), or the event's own
    timestamp when its delivery is not in the log; `matched` says which.
    """
    wanted = events["metric"].isin(tuple(metrics))
    if hard_bounces:
        failure = events["failure_message"] if "failure_message" in events else pd.Series(None, index=events.index)
        wanted |= is_hard_bounce(events["object_type"], events["metric"], failure)
    hits = events[wanted].copy()
    hits["source"] = _source(hits)
    at = pd.Series(np.nan, index=hits.index)
    if len(delivered) and "delivery_id" in hits:
        ids = delivered["delivery_id"]
        # Only the outcomes' deliveries are looked up: the rest are not indexed (unless ids repeat, which map refuses).
        needed = ids.isin(hits["delivery_id"]) | ids.isna()
        by_id = (delivered[needed] if ids.is_unique else delivered).set_index("delivery_id")
        use_sent = hits["metric"].eq("bounced")
        at = hits["delivery_id"].map(by_id["delivered_at"]).where(~use_sent,
                                                                 hits["delivery_id"].map(by_id["sent_at"]))
        # The delivery's audience and source hold even when the outcome event itself lacks them.
        for column in ("source", "campaign_id", "cluster", "cluster_name", "plan"):
            known = hits["delivery_id"].map(by_id[column])
            hits[column] = known.where(known.notna(), hits[column]) if column in hits else known
    hits["matched"] = at.notna().to_numpy()
    hits["at"] = at.fillna(hits["timestamp"]).astype("int64")
    return hits
