"""Job 3 report text: the source banner, the sentence after each section, tables, briefs, next steps.

Every sentence is computed from the run's data; functions return Markdown, HTML snippets or
display-ready tables.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cio_mavera.jobs.report_parts import figure_png, parameters_table  # noqa: F401 (the notebook uses them from here)
from cio_mavera.jobs.retention.analysis import event_counts
from cio_mavera.jobs.retention.research import Brief
from cio_mavera.jobs.retention.triggers import TriggerResult


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

def volume_sentence(events: pd.DataFrame) -> str:
    """One sentence on the volume and the opt-outs in it."""
    if events.empty:
        return "The event log is empty: no webhooks have been processed yet, so there is nothing to analyse."
    counts = event_counts(events)
    days = (events["timestamp"].max() - events["timestamp"].min()) / 86400
    return (f"The log holds **{len(events):,} events** over {days:.1f} days: {counts.get('delivered', 0):,} "
            f"deliveries, {counts.get('unsubscribed', 0)} unsubscribes, {counts.get('spammed', 0)} spam complaints "
            f"and {counts.get('bounced', 0)} bounces.")


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
    widths = " and ".join(f"{p['window_hours'] * s:g} h" for s in p.get("scales", [1]))
    how = (f"{tested:,} rolling windows of {widths} (every {p['step_hours']:g} h for the shortest) were "
           f"compared with what their campaign and audience predict; "
           f"{p.get('testable', tested):,} of them could have been significant with the events they had, and the "
           f"Benjamini-Hochberg correction at {p['alpha']:.0%} ran over those, counting overlapping windows of one "
           f"campaign or audience as one finding, with at least {p['min_count']} events per window.")
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


def _cv(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.2f}"


def assumptions_table(result: TriggerResult) -> pd.DataFrame:
    """Each assumption the spike tests make, what the data say about it, and what the tests used."""
    rows = []
    families = {"campaign": "opt-outs per delivered message", "churn": "valuable customers' churn per message sent"}
    for kind, checks in result.checks.items():
        family = families.get(kind, kind)
        for channel, fit in checks.get("sources", {}).items():
            rows.append({
                "tests of": family, "assumption": f"{channel} sources (campaigns, newsletters) differ in rate",
                "estimate": f"CV {_cv(fit['cv'])} (95% CI {_cv(fit['cv_low'])}–{_cv(fit['cv_high'])}), "
                            f"{fit['sources']} sources, {fit['events']} events",
                "test": f"no spread: p = {fit['p_value']:.2g}", "used": f"CV {_cv(fit['cv_used'])}"})
        for name, what in (("audiences", "audiences within a source differ"),
                           ("dispersion", "a source's days wobble beyond chance")):
            fit = checks.get(name)
            if fit:
                rows.append({"tests of": family, "assumption": what,
                             "estimate": f"CV {_cv(np.sqrt(fit['phi']))} over {fit['cells']} cells",
                             "test": f"none: p = {fit['p_value']:.2g}", "used": f"CV {_cv(np.sqrt(fit['phi_used']))}"})
        effects = checks.get("time_effects", {})
        for name, key, used in (("hour of week changes the rate", "hour_of_week_p", "hour_of_week_used"),
                                ("big sends (5x a source's usual hour) change the rate", "burst_p", "burst_used")):
            p = effects.get(key)
            rows.append({"tests of": family, "assumption": name,
                         "estimate": f"{effects.get('events', 0)} events outside each source's busiest span",
                         "test": "too few events to check" if p is None else f"no effect: p = {p:.2g}",
                         "used": "weighted" if effects.get(used) else "not used"})
    return pd.DataFrame(rows)


def assumptions_sentence(result: TriggerResult) -> str:
    """Plain words: what the baseline of a window is, and that each assumption was checked."""
    floors = result.parameters.get("floors", {})
    return ("A window is judged against what its own campaign sent elsewhere (other days, and other audiences "
            "in the same days), pulled towards its channel's typical rate only as far as the channel's campaigns "
            "are alike, with opt-outs dated by the message they answer, so a broadcast, a busy Monday or a "
            "campaign whose audience always opts out more is not a spike. The table says how much campaigns, "
            "audiences and days vary and whether send time or send size changes the rate; where a few thousand "
            "events cannot show a variation, the tests assume at least as much as real workspaces have: "
            f"campaigns' rates spread with a coefficient of variation of {floors.get('source_cv', 0):.1f} (one campaign "
            f"in twenty opting out three times as readily as the typical one), audiences by "
            f"{floors.get('audience_cv', 0):.0%} and days by {floors.get('day_cv', 0):.0%}.")


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


def credits_notes(briefs: Sequence[Brief]) -> tuple[str, str]:
    """(what the credits bought, the cooldown note) for the shared credits section."""
    asked = sum(1 for b in briefs if b.status == "asked")
    cooled = sum(1 for b in briefs if b.status == "cooldown")
    return (f"on {asked} Mave request(s)",
            f"{cooled} trigger(s) were inside their cooldown and reused the earlier brief at no cost.")


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


