"""Job 3 report pieces: rate tables, static charts, the sentences after each section, and results.json.

Figures are `matplotlib.figure.Figure` objects (no pyplot state), shown in the notebook as PNGs so the
HTML report is self-contained.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cio_mavera.jobs.report_parts import figure_png, parameters_table
from cio_mavera.jobs.retention_research import Brief
from cio_mavera.jobs.retention_triggers import METRIC_EVENTS, Trigger, TriggerResult, series_events

_OPT_OUT = ("unsubscribed", "spammed")




def _pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x * 100:.2f}%"


def _when(ts: pd.Timestamp | str) -> str:
    return f"{pd.Timestamp(ts):%Y-%m-%d %H:%M}"


# --- data source ------------------------------------------------------------------------------


def source_banner(mode: str, workspace: str, events: pd.DataFrame, pipeline: Mapping[str, Any] | None) -> str:
    """HTML: a loud SANDBOX banner (with the replay summary) in sandbox mode, a quiet note live."""
    period = "no events"
    if len(events) and events["timestamp"].notna().any():
        ts = pd.to_datetime(events["timestamp"].dropna().astype("int64"), unit="s", utc=True)
        period = f"{ts.min():%Y-%m-%d %H:%M} to {ts.max():%Y-%m-%d %H:%M} UTC"
    facts = (f"Workspace <b>{html.escape(workspace)}</b> · {len(events):,} unique events in the log · "
             f"{period}")
    if mode == "sandbox":
        replay = (pipeline or {}).get("replay", {})
        detail = ""
        if replay:
            detail = (f"<div style='margin-top:.4em'>Replay into a local receiver: <b>{replay.get('sent', 0):,}</b> "
                      f"signed webhooks sent, <b>{replay.get('acknowledged', 0):,}</b> acknowledged "
                      f"(<b>{replay.get('duplicates_acknowledged', 0):,}</b> of them duplicates, stored once), "
                      f"<b>{replay.get('failed', 0):,}</b> failed; the worker wrote "
                      f"<b>{(pipeline or {}).get('written', 0):,}</b> events to the log.</div>")
        return ("<div style='border:3px solid #c0392b;background:#fdecea;padding:.8em 1em;margin:.5em 0'>"
                "<div style='font-size:1.4em;font-weight:bold;color:#c0392b;letter-spacing:.05em'>SANDBOX DATA"
                "</div><div>Synthetic reporting webhooks and simulated Mave research from the local stand-in: "
                "no real customers, campaigns or research. Set the Customer.io and Mavera keys and run "
                "<code>cio-mavera webhooks serve</code> / <code>work</code> to analyse live events.</div>"
                f"<div style='margin-top:.4em'>{facts}</div>{detail}</div>")
    return f"<div style='border-left:4px solid #2c3e50;padding:.4em .8em;margin:.5em 0'><b>Live data</b> · {facts}</div>"




# --- volume -----------------------------------------------------------------------------------


def event_counts(events: pd.DataFrame) -> dict[str, int]:
    """Events per metric (all channels)."""
    return {str(k): int(v) for k, v in events["metric"].value_counts().items()}


def volume_chart(events: pd.DataFrame, bin_hours: int = 6) -> Figure:
    """Events per `bin_hours` over time: message activity above, opt-outs and bounces below."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    if events.empty:
        top.text(0.5, 0.5, "No events in the log", ha="center", va="center", transform=top.transAxes)
    else:
        when = pd.to_datetime(events["timestamp"].astype("int64"), unit="s", utc=True).dt.tz_convert(None)
        binned = when.dt.floor(f"{bin_hours}h")
        table = pd.crosstab(binned, events["metric"])
        for metric in ("sent", "delivered", "opened", "clicked"):
            if metric in table:
                top.plot(table.index, table[metric], label=metric)
        for metric in ("unsubscribed", "spammed", "bounced"):
            if metric in table:
                bottom.plot(table.index, table[metric], marker=".", label=metric)
    top.set_title(f"Webhook events per {bin_hours} h")
    top.set_ylabel(f"Events per {bin_hours} h")
    bottom.set_ylabel(f"Events per {bin_hours} h")
    bottom.set_xlabel("Event time (UTC)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8, ncols=4)
    return figure


def volume_sentence(events: pd.DataFrame) -> str:
    """One sentence on the volume and the opt-outs in it."""
    if events.empty:
        return "The event log is empty: no webhooks have been processed yet, so there is nothing to analyse."
    counts = event_counts(events)
    days = (events["timestamp"].max() - events["timestamp"].min()) / 86400
    return (f"The log holds **{len(events):,} events** over {days:.1f} days: {counts.get('delivered', 0):,} "
            f"deliveries, {counts.get('unsubscribed', 0)} unsubscribes, {counts.get('spammed', 0)} spam complaints "
            f"and {counts.get('bounced', 0)} bounces.")


# --- rates ------------------------------------------------------------------------------------


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


def rates_display(table: pd.DataFrame, label: str) -> Any:
    """A styled table: rates as percentages."""
    if table.empty:
        return pd.DataFrame({label: ["no data"]})
    shown = table.reset_index(drop=True).rename(columns={
        "unsubscribe_rate": "unsubscribe rate", "spam_rate": "spam rate", "opt_out_rate": "opt-out rate",
        "valuable_share": "on valuable plans"})
    formats = {c: "{:.2%}" for c in ("unsubscribe rate", "spam rate", "opt-out rate", "on valuable plans")
               if c in shown}
    return shown.style.format(formats, na_rep="–").hide(axis="index")


def rates_chart(table: pd.DataFrame, label_column: str, title: str, max_rows: int = 15) -> Figure:
    """Horizontal bars of unsubscribe and spam-complaint rates per row (% of delivered)."""
    figure = Figure(figsize=(9, 1.5 + 0.35 * min(max_rows, max(1, len(table)))), layout="constrained")
    ax = figure.subplots()
    if table.empty:
        ax.text(0.5, 0.5, "No deliveries in the log", ha="center", va="center", transform=ax.transAxes)
    else:
        rows = table.head(max_rows).iloc[::-1]
        y = np.arange(len(rows))
        ax.barh(y, rows["unsubscribe_rate"].fillna(0) * 100, color="#c0392b", label="Unsubscribes")
        ax.barh(y, rows["spam_rate"].fillna(0) * 100, left=rows["unsubscribe_rate"].fillna(0) * 100,
                color="#e67e22", label="Spam complaints")
        total = (rows["unsubscribed"].sum() + rows["spammed"].sum()) / max(1, rows["delivered"].sum())
        ax.axvline(total * 100, color="#34495e", linestyle="--", label=f"All shown ({total:.2%})")
        ax.set_yticks(y, rows[label_column])
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel("Rate (% of delivered messages, whole period)")
    ax.grid(axis="x", alpha=0.3)
    return figure


def campaign_sentence(table: pd.DataFrame) -> str:
    """Which campaign has the highest opt-out rate, against the rest."""
    if table.empty or table["delivered"].sum() == 0:
        return "No campaign deliveries are in the log yet."
    top = table.iloc[0]
    rest = table.iloc[1:]
    rest_rate = (rest["unsubscribed"].sum() + rest["spammed"].sum()) / max(1, rest["delivered"].sum())
    return (f"Over the whole period **{top['campaign']}** has the highest opt-out rate, "
            f"{_pct(top['opt_out_rate'])} of {int(top['delivered']):,} deliveries, against {_pct(rest_rate)} "
            f"for the other campaigns combined. Whole-period rates dilute a short spike, which is why the "
            f"next sections test rolling windows.")


def cluster_sentence(table: pd.DataFrame, cluster_info: Mapping[str, Any]) -> str:
    """Which audience opts out most, and where the clusters came from."""
    if table.empty:
        return f"No audience clusters are available ({cluster_info.get('reason', 'no attributes')})."
    top = table.iloc[0]
    return (f"The {cluster_info.get('k', len(table))} audience clusters ({cluster_info.get('source', '')}) differ: "
            f"**{top['audience']}** opts out most, {_pct(top['opt_out_rate'])} of "
            f"{int(top['delivered']):,} deliveries; {top['valuable_share']:.0%} of its people are on valuable plans.")


# --- spikes -----------------------------------------------------------------------------------


def triggers_table(result: TriggerResult, campaign_names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """The triggers as a readable table."""
    names = campaign_names or {}
    rows = []
    for t in result.triggers:
        what = (f"{names.get(t.campaign_id, 'campaign')} (#{t.campaign_id})" if t.kind == "campaign"
                else f"valuable customers in {t.cluster_name}")
        rows.append({"trigger": t.key, "what": what, "audience": t.cluster_name or "all recipients",
                     "window (UTC)": f"{_when(t.window_start)} → {_when(t.window_end)}", "events": t.count,
                     "exposure": t.exposure, "rate": _pct(t.rate), "baseline": _pct(t.baseline),
                     "× baseline": "∞" if not np.isfinite(t.ratio) else f"{t.ratio:.0f}×",
                     "adjusted p": f"{t.p_adjusted:.1g}"})
    return pd.DataFrame(rows)


def spikes_sentence(result: TriggerResult, campaign_names: Mapping[int, str] | None = None) -> str:
    """How many windows were tested and what stood out."""
    tested = result.parameters.get("tests", 0)
    p = result.parameters
    how = (f"{tested:,} rolling {p['window_hours']:g} h windows (every {p['step_hours']:g} h) were tested, "
           f"with the Benjamini-Hochberg correction at {p['alpha']:.0%} and at least {p['min_count']} events "
           "per window.")
    if not result.triggers:
        return f"**No spike found.** {how}"
    names = campaign_names or {}
    t = result.triggers[0]
    subject = (f"campaign **{names.get(t.campaign_id, '')} (#{t.campaign_id})**" if t.kind == "campaign"
               else f"valuable customers in **{t.cluster_name}**")
    audience = f", concentrated in the audience **{t.cluster_name}**" if t.kind == "campaign" and t.cluster_name else ""
    return (f"**{len(result.triggers)} spike(s) found.** The strongest: {subject}{audience}, "
            f"{t.count} opt-outs from {t.exposure} messages ({_pct(t.rate)}) between {_when(t.window_start)} and "
            f"{_when(t.window_end)} UTC, against a normal {_pct(t.baseline)} (adjusted p = {t.p_adjusted:.1g}). {how}")


def spike_chart(trigger: Trigger, events: pd.DataFrame, valuable_plans: Sequence[str] = (),
                window_hours: float = 24, step_hours: float = 6) -> Figure:
    """The trigger's series: rolling-window rate against its baseline, the flagged span shaded."""
    hits, exposure = series_events(events, {"kind": trigger.kind, "campaign_id": trigger.campaign_id,
                                            "cluster": trigger.cluster if trigger.series != "all recipients"
                                            else None, "metric": trigger.metric}, valuable_plans)
    figure = Figure(figsize=(9, 4), layout="constrained")
    ax = figure.subplots()
    if len(exposure):
        start, end = int(events["timestamp"].min()), int(events["timestamp"].max())
        step, width = int(step_hours * 3600), int(window_hours * 3600)
        starts = np.arange(start // step * step, end + 1, step)
        ht, et = np.sort(hits["timestamp"].to_numpy()), np.sort(exposure["timestamp"].to_numpy())
        k = np.searchsorted(ht, starts + width) - np.searchsorted(ht, starts)
        n = np.searchsorted(et, starts + width) - np.searchsorted(et, starts)
        centre = pd.to_datetime(starts + width // 2, unit="s")
        rate = np.where(n > 0, k / np.maximum(n, 1), np.nan) * 100
        ax.plot(centre, rate, marker=".", color="#c0392b", label=f"Rolling {window_hours:g} h rate")
        ax.axhline(trigger.baseline * 100, color="#34495e", linestyle="--",
                   label=f"Baseline ({trigger.baseline:.2%})")
        ax.axvspan(trigger.window_start.tz_convert(None), trigger.window_end.tz_convert(None), color="#f5b7b1",
                   alpha=0.5, label="Flagged window")
        ax.legend(loc="upper left", fontsize=8)
    scope = f" — {trigger.cluster_name}" if trigger.cluster_name and trigger.series != "all recipients" else ""
    subject = f"Campaign #{trigger.campaign_id}" if trigger.kind == "campaign" else "Valuable customers"
    ax.set_title(f"{subject}{scope}: {METRIC_WORDS_SHORT.get(trigger.metric, trigger.metric)} vs baseline")
    ax.set_xlabel("Window centre (UTC)")
    ax.set_ylabel("Rate (% of messages)")
    ax.grid(alpha=0.3)
    return figure


METRIC_WORDS_SHORT = {"opt_out": "unsubscribes + spam complaints", "churn": "churn signals"}


# --- briefs, credits, next steps ------------------------------------------------------------


def briefs_markdown(briefs: Sequence[Brief], campaign_names: Mapping[int, str] | None = None) -> str:
    """Each brief: the trigger, Mave's content, its sources and confidence (or why there is none)."""
    if not briefs:
        return "No trigger, so no research was requested."
    names = campaign_names or {}
    parts = []
    for b in briefs:
        t = b.trigger
        subject = (f"Campaign {names.get(t.get('campaign_id'), '')} (#{t.get('campaign_id')})"
                   if t.get("kind") == "campaign" else f"Valuable customers in {t.get('cluster_name')}")
        head = f"### {subject}" + (f" — audience: {t['cluster_name']}" if t.get("kind") == "campaign"
                                   and t.get("cluster_name") else "")
        status = {"asked": "asked Mave this run", "cooldown": f"not asked again ({b.reason})",
                  "skipped": f"**skipped**: {b.reason}", "failed": f"**failed**: {b.reason}"}[b.status]
        confidence = f" · Mave confidence {b.confidence:.0%}" if b.confidence is not None else ""
        lines = [head, f"_Trigger `{b.key}` · {status}{confidence} · {b.credits} credits_", ""]
        if b.content:
            lines += [b.content.strip(), ""]
        if b.sources:
            lines.append("**Sources:** " + "; ".join(
                f"[{html.escape(str(s.get('title', 'source')))}]({s.get('url', '')})" for s in b.sources[:6]))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def credits_markdown(budget_summary: Mapping[str, Any], briefs: Sequence[Brief]) -> str:
    """Credits spent of the budget, asks avoided by the cooldown, and skipped triggers."""
    asked = [b for b in briefs if b.status == "asked"]
    cooled = [b for b in briefs if b.status == "cooldown"]
    skipped = [b for b in briefs if b.status in ("skipped", "failed")]
    lines = [f"Spent **{budget_summary['spent']} of {budget_summary['max_credits']} credits** on "
             f"{len(asked)} Mave request(s) ({budget_summary['remaining']} left). "
             f"{len(cooled)} trigger(s) were inside their cooldown and reused the earlier brief at no cost."]
    if skipped:
        lines += ["", f"**{len(skipped)} trigger(s) without research this run:**", ""]
        lines += [f"- `{b.key}` — {b.reason}" for b in skipped]
    else:
        lines.append("No trigger was skipped.")
    return "\n".join(lines)


def next_steps(result: TriggerResult, briefs: Sequence[Brief], campaign_names: Mapping[int, str] | None = None,
               mode: str = "sandbox") -> str:
    """Concrete follow-ups computed from the triggers and briefs."""
    names = campaign_names or {}
    steps = []
    for t in result.triggers:
        if t.kind == "campaign":
            audience = f" for the audience **{t.cluster_name}**" if t.cluster_name else ""
            steps.append(f"- Review campaign **{names.get(t.campaign_id, '')} (#{t.campaign_id})**{audience}: what "
                         f"changed around {_when(t.window_start)} UTC (copy, frequency, targeting)? Consider "
                         f"pausing it for that audience until the cause is fixed.")
        else:
            steps.append(f"- Hand the valuable customers in **{t.cluster_name}** who opted out or bounced to "
                         "customer success for a personal check-in.")
    if any(b.status in ("skipped", "failed") for b in briefs):
        steps.append("- Some triggers have no research: raise `max_credits` or re-run after the cooldown.")
    if not result.triggers:
        steps.append("- Nothing spiked. Keep the worker running (`cio-mavera webhooks work`) so new events are "
                     "watched, and re-run this report on a schedule.")
    if mode == "sandbox":
        steps.append("- This is sandbox data. Connect a real workspace: set the keys, point a Customer.io "
                     "reporting webhook at `cio-mavera webhooks serve` and run `cio-mavera webhooks work`.")
    return "\n".join(steps)


# --- results.json -----------------------------------------------------------------------------


def retention_results(*, mode: str, workspace: str, events: pd.DataFrame, result: TriggerResult,
                      briefs: Sequence[Brief], budget_summary: Mapping[str, Any], enrichment: Mapping[str, Any],
                      pipeline: Mapping[str, Any] | None, campaign_names: Mapping[int, str] | None = None
                      ) -> dict[str, Any]:
    """The run's machine-readable findings: triggers with their briefs, credits, counts."""
    by_key = {b.key: b for b in briefs}
    names = campaign_names or {}
    triggers = []
    for t in result.triggers:
        entry = t.to_dict()
        entry["campaign_name"] = names.get(t.campaign_id) if t.campaign_id is not None else None
        brief = by_key.get(t.key)
        entry["brief"] = None if brief is None else {
            "status": brief.status, "content": brief.content, "sources": brief.sources,
            "confidence": brief.confidence, "thread_id": brief.thread_id, "credits": brief.credits,
            "asked_at": brief.asked_at, "reason": brief.reason}
        triggers.append(entry)
    return {
        "mode": mode, "workspace": workspace,
        "event_counts": {"unique_events": int(len(events)), "by_metric": event_counts(events) if len(events) else {}},
        "pipeline": dict(pipeline) if pipeline else None,
        "enrichment": {k: v for k, v in enrichment.items()},
        "tests": result.parameters,
        "triggers": triggers,
        "briefs": [b.to_dict() for b in briefs],
        "credits_spent": int(budget_summary.get("spent", 0)),
        "credits": dict(budget_summary),
        "skipped": [{"key": b.key, "status": b.status, "reason": b.reason} for b in briefs
                    if b.status in ("skipped", "failed")],
    }


__all__ = ["METRIC_EVENTS", "briefs_markdown", "campaign_rates", "campaign_sentence", "cluster_rates",
           "cluster_sentence", "credits_markdown", "event_counts", "figure_png", "next_steps", "parameters_table",
           "rates_chart", "rates_display", "retention_results", "source_banner", "spike_chart", "spikes_sentence",
           "triggers_table", "volume_chart", "volume_sentence"]
