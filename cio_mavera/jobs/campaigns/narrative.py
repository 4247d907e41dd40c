"""Job 1's report text: data-driven sentences, tables and banners the notebook displays.

Every sentence is computed from the findings, so the report never says something the data does
not. Functions return Markdown strings, HTML snippets or display-ready DataFrames; the notebook
wraps them in `IPython.display`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cio_mavera.jobs.campaigns.analysis import Findings
from cio_mavera.jobs.campaigns.data import CampaignData
from cio_mavera.jobs.campaigns.stats import rate_definition
from cio_mavera.jobs.campaigns.strategy import Strategy
from cio_mavera.jobs.campaigns.variations import CURRENT, Variation
from cio_mavera.jobs.credits import SkippedStep
from cio_mavera.jobs.report_parts import age_text, figure_png, parameters_table

__all__ = [
    "checks_markdown",
    "checks_table",
    "figure_png",
    "flagged_table",
    "funnel_display",
    "funnel_sentence",
    "method_markdown",
    "mode_banner",
    "next_steps",
    "parameters_table",
    "spread_sentence",
    "strategy_markdown",
    "summary_bullets",
    "trend_sentence",
    "underperformer_sentence",
    "variations_sentence",
    "variations_sections",
    "variations_table",
]

CHANNEL_NAMES = {"email": "email", "push": "push", "twilio": "SMS", "whatsapp": "WhatsApp"}


def _channel(name: str) -> str:
    return CHANNEL_NAMES.get(name, name)


def _pct(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{100 * float(value):.{digits}f}%"


def _label(metric: str) -> str:
    return rate_definition(metric).label.lower()


def _message(row: Any) -> str:
    # A Series' `.name` is its index label, so read fields by key when given a row of a frame.
    get = row.get if isinstance(row, Mapping | pd.Series) else lambda k: getattr(row, k, None)
    return f"“{get('name') or 'message'}” ({_channel(get('channel'))} #{int(get('action_id'))})"




# --- mode, freshness, parameters ---------------------------------------------------------------


def mode_banner(data: CampaignData) -> str:
    """HTML: a loud SANDBOX DATA banner in sandbox mode (a quiet live note otherwise) and data freshness."""
    pulled = [pd.Timestamp(v) for v in data.freshness.values() if v]
    oldest = min(pulled) if pulled else None
    age = age_text(oldest) if oldest is not None else "unknown"
    window = f"{data.start:%Y-%m-%d} to {(data.end - pd.Timedelta(days=1)):%Y-%m-%d} (UTC, {data.days} days)"
    facts = (f"Workspace <b>{html.escape(data.workspace)}</b> · window {window} · "
             f"data pulled {html.escape(f'{oldest:%Y-%m-%d %H:%M} UTC' if oldest is not None else 'unknown')} "
             f"({age} ago)")
    if data.mode == "sandbox":
        return ("<div style='border:3px solid #c0392b;background:#fdecea;padding:.8em 1em;margin:.5em 0'>"
                "<div style='font-size:1.4em;font-weight:bold;color:#c0392b;letter-spacing:.05em'>"
                "SANDBOX DATA</div><div>Synthetic workspace and simulated Mavera answers from the local "
                "stand-in: no real customers, campaigns or research. Set the Customer.io and Mavera keys "
                f"to run on live data.</div><div style='margin-top:.4em'>{facts}</div></div>")
    return (f"<div style='border-left:4px solid #2c3e50;padding:.4em .8em;margin:.5em 0'>"
            f"<b>Live data</b> · {facts}</div>")






# --- summary -----------------------------------------------------------------------------------


def summary_bullets(findings: Findings, strategy: Strategy, ranked: pd.DataFrame) -> str:
    """Three Markdown bullets: what underperforms, what Mave recommends, which new copy scored best."""
    return "\n".join([f"- {_finding_bullet(findings)}", f"- {_strategy_bullet(strategy)}",
                      f"- {_variation_bullet(findings, ranked)}"])


def _finding_bullet(findings: Findings) -> str:
    tested = findings.tests.loc[findings.tests["reason"].isna(), "action_id"].nunique()
    if findings.flagged.empty:
        return (f"**No message underperforms** its channel among the {tested} tested "
                f"(false discovery rate {findings.alpha:.0%}, at least {findings.min_relative_drop:.0%} worse).")
    worst = findings.flagged.iloc[0]
    n_messages = findings.flagged["action_id"].nunique()
    return (f"**{n_messages} of {tested} messages underperform** their channel. The clearest: "
            f"{_message(worst)} has a {_label(worst['metric'])} of {_pct(worst['rate'])} where a typical "
            f"{_channel(worst['channel'])} message has {_pct(worst['baseline'])} (typical messages range "
            f"{_pct(worst['typical_low'])}–{_pct(worst['typical_high'])}; "
            f"{_relative(worst['relative_difference'])}, adjusted p = {worst['p_adjusted']:.1g}).")


def _relative(value: float) -> str:
    if not math.isfinite(value):
        return "from a zero baseline"
    return f"{value:+.0%} relative"


def _strategy_bullet(strategy: Strategy) -> str:
    if strategy.skipped or not strategy.content:
        return f"**Mave was not asked for a strategy**: {strategy.skipped or 'no answer'}."
    first = strategy.key_points[0] if strategy.key_points else strategy.content.splitlines()[0]
    return f"**Mave's first recommendation**: {first.rstrip('.')}."


def _variation_bullet(findings: Findings, ranked: pd.DataFrame) -> str:
    if ranked.empty:
        return "**No new variations were scored** (see credits and skipped calls below)."
    best = ranked.sort_values(["lift_vs_current", "mean_score"], ascending=False, na_position="last").iloc[0]
    names = dict(zip(findings.messages["action_id"].astype(int), findings.messages["name"], strict=True))
    headline = best["subject"] or (best["body_outline"][0] if len(best["body_outline"]) else best["variation_id"])
    lift = best["lift_vs_current"]
    versus = "" if not math.isfinite(lift) else f", {lift:+.1f} points vs the current copy"
    return (f"**Best new copy** for “{names.get(int(best['action_id']), best['action_id'])}”: "
            f"“{headline}” scores {best['mean_score']:.1f}/10 with {int(best['personas'])} personas{versus}.")


# --- funnel, underperformers, trend --------------------------------------------------------------


def funnel_sentence(findings: Findings) -> str:
    """One sentence on the spread of the click rate per channel and its baseline."""
    rates = findings.rates[findings.rates["metric"] == "human_click_rate"]
    rates = rates[rates["trials"] > 0]
    if rates.empty:
        return "No message had deliveries in this window."
    parts = []
    for channel, group in rates.groupby("channel", sort=True):
        base = findings.baselines[(findings.baselines["channel"] == channel)
                                  & (findings.baselines["metric"] == "human_click_rate")]["rate"]
        low, high = group.loc[group["rate"].idxmin()], group.loc[group["rate"].idxmax()]
        parts.append(f"{_channel(channel)} from {_pct(low['rate'])} (“{low['name']}”) to "
                     f"{_pct(high['rate'])} (“{high['name']}”), pooled {_pct(base.iloc[0])}")
    sent = int(findings.rates.loc[findings.rates["metric"] == "delivery_rate", "trials"].sum())
    return (f"{findings.rates['action_id'].nunique()} messages were sent {sent:,} times in the window. "
            f"Human click rate by channel: " + "; ".join(parts) + ".")


def funnel_display(findings: Findings) -> Any:
    """The funnel table styled for reading: rates with two decimals, a dash where a rate does not apply."""
    table = findings.funnel
    rates = [c for c in table.columns if c.endswith("(%)")]
    return (table.style.format(precision=2, na_rep="–", subset=rates)
            .format(thousands=",", subset=["Sent"], na_rep="–").hide(axis="index"))


def flagged_table(findings: Findings) -> pd.DataFrame:
    """Flagged (message, rate) pairs for display: observed and shrunken rate with intervals, the
    channel's typical rate and range, the spread between its messages, effect and adjusted p."""
    columns = ["Message", "Channel", "Rate", "Rate (%)", "95% CI (%)", "Shrunken (%)", "Typical message (%)",
               "Typical range (%)", "Spread (logit SD)", "Relative difference", "Adjusted p", "Trials"]
    if findings.flagged.empty:
        return pd.DataFrame(columns=columns).set_index("Message")
    f = findings.flagged
    return pd.DataFrame({
        "Message": [f"{n} (#{a})" for n, a in zip(f["name"], f["action_id"], strict=True)],
        "Channel": f["channel"].map(_channel),
        "Rate": f["metric"].map(lambda m: rate_definition(m).label),
        "Rate (%)": (f["rate"].astype(float) * 100).round(2),
        "95% CI (%)": [_range(lo, hi) for lo, hi in zip(f["ci_low"], f["ci_high"], strict=True)],
        "Shrunken (%)": [f"{100 * s:.2f} ({_range(lo, hi)})" for s, lo, hi in
                         zip(f["shrunk_rate"], f["shrunk_low"], f["shrunk_high"], strict=True)],
        "Typical message (%)": (f["baseline"].astype(float) * 100).round(2),
        "Typical range (%)": [_range(lo, hi) for lo, hi in zip(f["typical_low"], f["typical_high"], strict=True)],
        "Spread (logit SD)": f["spread_sd"].astype(float).round(2),
        "Relative difference": [f"{v:+.0%}" if math.isfinite(v) else "n/a" for v in f["relative_difference"].astype(float)],
        "Adjusted p": [f"{p:.1e}" for p in f["p_adjusted"].astype(float)],
        "Trials": f["trials"].astype(int),
    })[columns].set_index("Message")


def _range(low: float, high: float) -> str:
    return f"{100 * float(low):.2f}–{100 * float(high):.2f}"


def method_markdown(findings: Findings) -> str:
    """The test in plain words, with this run's parameters."""
    return "\n".join([
        "Messages differ from each other even when nothing is wrong with them: different content, "
        "audiences and send times give each its own rates. So a message is not compared with the "
        "pooled rate of the rest of its channel (that would call half the messages \"significant\") "
        "but with **what a typical message of its channel would show**:",
        "",
        "1. **How much messages differ.** For each rate, the messages of a channel are described by a "
        "typical rate and a spread around it (a random-effects model on the log-odds scale, fitted "
        "without the message under test). Channels share one spread unless the data says otherwise, "
        "and messages that are clearly out of line are left out when describing the others.",
        "2. **How noisy each message is.** Its daily counts show how much it moves from day to day "
        "beyond chance; that extra noise is added to its own uncertainty.",
        "3. **How surprising it is.** The p-value is the chance that a typical message of the channel, "
        "with the same number of deliveries, would do this badly or worse. With few messages on a "
        "channel the spread is uncertain, and the test allows for that (heavier tails).",
        f"4. **How many were looked at.** Every test is corrected together (Benjamini-Hochberg, "
        f"{findings.alpha:.0%} false discovery rate), and a flag also needs the message to be at least "
        f"{findings.min_relative_drop:.0%} worse than the typical message. Messages with fewer than "
        f"{findings.min_trials:,} deliveries are not tested.",
        "",
        "Each flagged message also gets a *shrunken* rate: its own rate pulled towards its channel in "
        "proportion to how noisy it is, with a 95% interval; the best single guess of its true rate.",
    ])


def spread_sentence(findings: Findings, metric: str = "human_click_rate") -> str:
    """How much typical messages of each channel differ on `metric`, from the fitted spreads."""
    rows = findings.spreads[findings.spreads["metric"] == metric]
    if rows.empty:
        return f"Too few messages to describe how they differ on {_label(metric)}."
    parts = [f"{_channel(r.channel)} {_pct(r.typical_rate, 2)} (typical messages "
             f"{_pct(r.typical_low, 2)}–{_pct(r.typical_high, 2)}, {r.messages} messages)"
             for r in rows.itertuples(index=False)]
    spread = rows["spread_cv"].astype(float).median()
    return (f"Typical {_label(metric)} by channel: " + "; ".join(parts) + f". Ordinary messages differ "
            f"by about ±{spread:.0%} of their channel's rate, which is why only messages outside that "
            "range can be underperformers.")


def checks_markdown(findings: Findings) -> str:
    """Markdown bullets: each assumption, how it was checked on this data, the result, what follows."""
    return "\n".join(f"- **{r.assumption}** Checked with: {r.check}. On this data: {r.result}. "
                     f"So: {r.consequence}." for r in findings.checks.itertuples(index=False))


def checks_table(findings: Findings) -> pd.DataFrame:
    """The test's assumptions, how each was checked on this data, the result and what follows."""
    table = findings.checks.rename(columns={"assumption": "Assumption", "check": "How it was checked",
                                            "result": "On this data", "consequence": "What the test does"})
    return table.set_index("Assumption")


def underperformer_sentence(findings: Findings) -> str:
    """What the chart shows, in one or two sentences."""
    tested = findings.tests[findings.tests["reason"].isna()]
    untested = findings.tests["reason"].notna().sum()
    note = f" {untested} (message, rate) pairs had too little data to test." if untested else ""
    if findings.flagged.empty:
        return (f"None of the {len(tested)} tests across {tested['action_id'].nunique()} messages shows a "
                f"material shortfall after the false-discovery-rate correction.{note}")
    messages = findings.flagged.drop_duplicates("action_id")
    listing = "; ".join(
        f"{_message(row)}: " + ", ".join(
            f"{_label(r.metric)} {_pct(r.rate)} vs typical {_pct(r.baseline)}"
            for r in findings.flagged[findings.flagged["action_id"] == row.action_id].itertuples(index=False))
        for row in messages.itertuples(index=False))
    return (f"{len(findings.flagged)} of {len(tested)} tests flag {len(messages)} messages as significantly "
            f"and materially worse than a typical message of their channel: {listing}.{note}")


def trend_sentence(findings: Findings) -> str:
    """How the pooled rate moved per channel from the first to the last full period."""
    trend = findings.trend
    if trend.empty:
        return "No trend: there are no metrics in the window."
    label = _label(findings.trend_rate)
    parts = []
    for channel, rows in trend.sort_values("period_start").groupby("channel", sort=True):
        rows = rows[rows["trials"] > 0]
        if len(rows) < 2:
            continue
        first, last = rows.iloc[0], rows.iloc[-1]
        overlap = first["ci_low"] <= last["ci_high"] and last["ci_low"] <= first["ci_high"]
        verdict = "within noise" if overlap else ("up" if last["rate"] > first["rate"] else "down")
        parts.append(f"{_channel(channel)} {_pct(first['rate'], 2)} → {_pct(last['rate'], 2)} ({verdict})")
    if not parts:
        return f"Too few periods to describe a trend in {label}."
    return (f"Pooled {label}, first to last period: " + "; ".join(parts) +
            ". Periods whose 95% bands overlap are not a real change.")


# --- strategy, variations, credits -------------------------------------------------------------


def strategy_markdown(strategy: Strategy, max_sources: int = 5) -> str:
    """Mave's answer as Markdown, with its sources listed after it."""
    if strategy.skipped or not strategy.content:
        return f"_Mave was not asked: {strategy.skipped or 'no answer'}._"
    lines = [strategy.content.strip()]
    if strategy.sources:
        lines += ["", "**Sources Mave cited**", ""]
        for source in strategy.sources[:max_sources]:
            title = str(source.get("title") or source.get("url") or "source")
            url = source.get("url")
            lines.append(f"- [{title}]({url})" if url else f"- {title}")
    cost = "from cache, no credits" if strategy.cached else f"{strategy.credits} credits"
    lines += ["", f"_Mave thread {strategy.thread_id or 'n/a'} ({cost})._"]
    return "\n".join(lines)


def variations_table(ranked: pd.DataFrame, scores: pd.DataFrame, action_id: int,
                     drafts: Sequence[Variation] = ()) -> pd.DataFrame:
    """One message's ranked variations and its current copy, with each persona's score and the
    reasons given by the highest and the lowest scorer."""
    rows = ranked[ranked["action_id"] == action_id]
    if rows.empty:
        return pd.DataFrame()
    mine = scores[scores["action_id"] == action_id]
    per_persona = mine.pivot_table(index="variation_id", columns="persona_name", values="score",
                                   aggfunc="mean")
    table = pd.DataFrame({
        "Rank": [str(int(r)) for r in rows["rank"]],
        "Copy": [_copy_text(r.subject, r.preheader, r.body_outline) for r in rows.itertuples(index=False)],
        "Mean score (1-10)": rows["mean_score"].astype(float).to_numpy(),
        "vs current": [f"{v:+.1f}" if math.isfinite(v) else "n/a"
                       for v in rows["lift_vs_current"].astype(float)],
        "Open / click (prob.)": [f"{o:.2f} / {c:.2f}"
                                 for o, c in zip(rows["would_open"], rows["would_click"], strict=True)],
        "Why (highest / lowest scorer)": [f"{b} / {w}" for b, w in
                                          zip(rows["best_reason"], rows["worst_reason"], strict=True)],
    }, index=pd.Index(rows["variation_id"].to_numpy(), name="Variation"))
    control = mine[mine["variation_id"] == CURRENT]
    if not control.empty:
        live = next((d for d in drafts if d.action_id == action_id and d.variation_id == CURRENT), None)
        ordered = control.sort_values(["score", "persona_name"], kind="stable")
        table.loc[CURRENT] = [
            "control",
            "Current: " + (_copy_text(live.subject, live.preheader, live.body_outline) if live else "live copy"),
            float(control["score"].mean()),
            "",
            f"{control['would_open'].mean():.2f} / {control['would_click'].mean():.2f}",
            f"{ordered['reason'].iloc[-1]} / {ordered['reason'].iloc[0]}",
        ]
    for persona in per_persona.columns:
        table.insert(len(table.columns) - 1, persona, per_persona[persona].reindex(table.index).to_numpy())
    return table


def variations_sections(findings: Findings, ranked: pd.DataFrame, scores: pd.DataFrame,
                        drafts: Sequence[Variation] = ()) -> list[tuple[str, Any]]:
    """(Markdown heading, styled table) per rewritten message, strongest evidence first."""
    sections = []
    for row in findings.messages.itertuples(index=False):
        table = variations_table(ranked, scores, int(row.action_id), drafts)
        if table.empty:
            continue
        shortfall = ", ".join(_label(m) for m in row.metrics)
        styled = table.style.format(precision=1, na_rep="–").format(
            precision=2, subset=["Mean score (1-10)"])
        sections.append((f"### {_message(row)}: low {shortfall}", styled))
    return sections


def _copy_text(subject: str, preheader: str, outline: Sequence[str]) -> str:
    parts = [p for p in (subject, preheader) if p]
    if not parts and len(outline):
        parts = [outline[0]]
    return " — ".join(parts)


def variations_sentence(findings: Findings, ranked: pd.DataFrame) -> str:
    """Per message: the winner, its score and whether it beats the live copy."""
    if ranked.empty:
        return "No variations were scored."
    names = dict(zip(findings.messages["action_id"].astype(int), findings.messages["name"], strict=True))
    parts = []
    for action_id, rows in ranked.groupby("action_id", sort=False):
        top = rows.iloc[0]
        lift = top["lift_vs_current"]
        beat = sum(1 for v in rows["lift_vs_current"] if math.isfinite(v) and v > 0)
        comparison = ("" if not math.isfinite(lift) else
                      f", {beat} of {len(rows)} beat the current copy")
        parts.append(f"“{names.get(int(action_id), action_id)}”: variation {top['variation_id']} leads with "
                     f"{top['mean_score']:.1f}/10{comparison}")
    return "; ".join(parts) + ". Persona scores are a screen before an A/B test, not a substitute for one."


def next_steps(findings: Findings, strategy: Strategy, ranked: pd.DataFrame,
               skipped: Sequence[SkippedStep]) -> str:
    """Markdown bullets of concrete follow-ups computed from the findings."""
    steps = []
    names = dict(zip(findings.messages["action_id"].astype(int), findings.messages["name"], strict=True))
    for action_id, rows in ranked.groupby("action_id", sort=False):
        top = rows.iloc[0]
        name = names.get(int(action_id), action_id)
        metric = findings.messages.loc[findings.messages["action_id"] == action_id, "metrics"].iloc[0][0]
        if math.isfinite(top["lift_vs_current"]) and top["lift_vs_current"] <= 0:
            steps.append(f"No new copy for “{name}” beat the current one with the personas: brief a "
                         "copywriter with the strategy above before testing.")
            continue
        steps.append(f"A/B test variation {top['variation_id']} of “{name}” against the current copy; "
                     f"decide on {_label(metric)}.")
    unrewritten = findings.flagged[~findings.flagged["action_id"].isin(findings.messages["action_id"])]
    if not unrewritten.empty:
        steps.append(f"{unrewritten['action_id'].nunique()} more flagged message(s) were not rewritten: "
                     "raise `max_underperformers` to include them.")
    if findings.flagged.empty:
        steps.append("Nothing underperforms: re-run with a longer window (`days`) or another `channel` "
                     "to look for smaller effects.")
    if skipped:
        steps.append("Raise `max_credits` and re-run: cached answers cost nothing, so only the skipped "
                     "calls will be paid for.")
    if strategy.content:
        steps.append("Share the strategy above with the copywriters; the persona scores show which "
                     "audiences each direction wins or loses.")
    steps.append("Re-run this report after the test ends (same parameters) to check that the "
                 "flagged rates moved into their channel's typical range.")
    return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
