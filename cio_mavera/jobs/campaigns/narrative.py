"""Job 1's report text: the banner, the summary, data-driven sentences and what to do next.

Every sentence is computed from the findings, so the report never says something the data does
not. Names and copy from Customer.io and answers from Mavera are data: they enter Markdown through
`markup.md` / `md_block` and HTML through `report_parts` (which escapes), never as markup.
Tables live in `tables`, charts in `charts`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cio_mavera.changes import changes_markdown
from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.campaigns.analysis import Findings
from cio_mavera.jobs.campaigns.data import CampaignData
from cio_mavera.jobs.campaigns.labels import channel_name, rate_label
from cio_mavera.jobs.campaigns.stats import rate_definition
from cio_mavera.jobs.campaigns.strategy import Strategy
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.credits import SkippedStep, credits_section
from cio_mavera.markup import md, md_block, safe_url

_pct = rp.format_percent
# A leading stretch of days without a single send this long (or 5% of the window) means the
# window reaches back before the workspace's history; one quiet day does not.
_MIN_EMPTY_DAYS = 2


def _quoted(name: Any, action_id: Any) -> str:
    """“Welcome email” (#732), as plain text (escape it for the sink)."""
    return f"“{str(name or 'message').strip()}” (#{int(action_id)})"


def _mquoted(name: Any, action_id: Any) -> str:
    """The same, escaped for Markdown."""
    return md(_quoted(name, action_id))


# ---- banner and history --------------------------------------------------------------------


def banner(data: CampaignData) -> rp.ReportHtml:
    """The sandbox/live banner with the workspace, window and data age, and a notice when the
    window reaches past the history that exists."""
    pulled = [pd.Timestamp(v) for v in data.freshness.values() if v]
    oldest = min(pulled) if pulled else None
    last_day = data.end - pd.Timedelta(days=1)
    details = {"Workspace": data.workspace,
               "Window": f"{data.start:%Y-%m-%d} to {last_day:%Y-%m-%d} (UTC, {data.days} days)",
               "Data pulled": (f"{oldest:%Y-%m-%d %H:%M} UTC ({rp.age_text(oldest)} ago)"
                               if oldest is not None else "unknown")}
    return rp.ReportHtml(rp.mode_banner(data.mode, details) + history_notice(data))


def send_days(data: CampaignData) -> pd.Series:
    """The UTC days of the window on which any message was sent, in order."""
    metrics = data.metrics
    sent = metrics[metrics["action_id"].notna() & metrics["metric"].isin(("sent", "delivered"))
                   & (pd.to_numeric(metrics["value"], errors="coerce") > 0)]
    days = pd.to_datetime(sent["bucket_start"], utc=True).dt.floor("D")
    return days[(days >= data.start) & (days < data.end)].drop_duplicates().sort_values()


def history_notice(data: CampaignData) -> str:
    """A warning when the window asks for days the workspace has no sends for, else ""."""
    days = send_days(data)
    if days.empty:
        return rp.notice(f"No message was sent in the window ({data.days} days from "
                         f"{data.start:%Y-%m-%d}): there is nothing to measure. Choose a window "
                         "with sends (start and end, or days).")
    threshold = max(_MIN_EMPTY_DAYS, math.ceil(0.05 * data.days))
    before = int((days.iloc[0] - data.start) / pd.Timedelta(days=1))
    after = int((data.end - days.iloc[-1]) / pd.Timedelta(days=1)) - 1
    parts = []
    if before >= threshold:
        parts.append(f"the window asks for {data.days} days from {data.start:%Y-%m-%d}, but the "
                     f"first sends in it are on {days.iloc[0]:%Y-%m-%d}: its first {before} days "
                     "have no data (the workspace's history may not reach back that far)")
    if after >= threshold:
        parts.append(f"its last {after} days (after {days.iloc[-1]:%Y-%m-%d}) have no sends")
    if not parts:
        return ""
    covered = data.days - (before if before >= threshold else 0) - (after if after >= threshold else 0)
    text = "; ".join(parts)
    return rp.notice(f"{text[:1].upper()}{text[1:]}. Rates, baselines and the trend cover the "
                     f"{covered} days with data, not the {data.days} asked for.")


# ---- the summary ---------------------------------------------------------------------------


def _tested(findings: Findings) -> int:
    return int(findings.tests.loc[findings.tests["reason"].isna(), "action_id"].nunique())


def clearest_flag(findings: Findings) -> pd.Series | None:
    """The flag with the strongest evidence (smallest adjusted p, then the largest shortfall)."""
    if findings.flagged.empty:
        return None
    ordered = findings.flagged.assign(_gap=-findings.flagged["relative_difference"].abs())
    return ordered.sort_values(["p_adjusted", "_gap", "action_id"], kind="stable").iloc[0]


def best_variation(ranked: pd.DataFrame) -> pd.Series | None:
    """The top variation that gains most on its current copy (None when nothing was scored)."""
    if ranked.empty:
        return None
    tops = ranked[ranked["rank"] == 1]
    return tops.sort_values(["lift_vs_current", "mean_score"], ascending=False, kind="stable",
                            na_position="last").iloc[0]


def key_numbers(findings: Findings, ranked: pd.DataFrame, plan: pd.DataFrame) -> list[rp.KeyNumber]:
    """The 2-5 numbers that matter, each with its uncertainty."""
    flags = findings.flagged
    tests = int(findings.tests["reason"].isna().sum())
    numbers = [rp.KeyNumber(
        "Messages worse than their channel", f"{flags['action_id'].nunique()} of {_tested(findings)}",
        f"{findings.alpha:.0%} false discovery rate: about 1 flag in {round(1 / findings.alpha)} "
        "may be chance",
        f"{tests:,} tests (message × rate); a flag is also at least "
        f"{findings.min_relative_drop:.0%} worse than a typical message"
        + (f"; flags shown for campaign(s) {', '.join(f'#{c}' for c in findings.campaign_ids)} only"
           if findings.campaign_ids else ""))]
    worst = clearest_flag(findings)
    if worst is not None:
        numbers.append(rp.KeyNumber(
            f"Clearest: {_quoted(worst['name'], worst['action_id'])}, {rate_label(worst['metric'], True)}",
            rp.format_percent_interval(worst["rate"], worst["ci_low"], worst["ci_high"]),
            f"95% Wilson interval · {rp.format_p(worst['p_adjusted'], 'adjusted p')}",
            f"against {_pct(worst['baseline'])} for a typical {channel_name(worst['channel'])} "
            f"message (typical range {_pct(worst['typical_low'])}–{_pct(worst['typical_high'])})"))
    best = best_variation(ranked)
    if best is not None:
        lift = float(best["lift_vs_current"])
        versus = (f"{lift:+.1f} against the current copy's {float(best['current_score']):.1f}"
                  if math.isfinite(lift) else "the current copy was not scored")
        numbers.append(rp.KeyNumber(
            f"Best new copy: variation {best['variation_id']} of "
            f"{_quoted(_name_of(findings, best['action_id']), best['action_id'])}",
            f"{float(best['mean_score']):.1f} / 10",
            f"{int(best['personas'])} personas, scores {float(best['min_score']):.0f}–"
            f"{float(best['max_score']):.0f}; a screen, not a measurement", versus))
        test = plan[plan["action_id"] == int(best["action_id"])]
        if not test.empty and pd.notna(test["per_variant"].iloc[0]):
            row = test.iloc[0]
            numbers.append(rp.KeyNumber(
                "A/B test of that variation: deliveries needed", f"{int(row['per_variant']):,} per variant",
                f"{row['power']:.0%} power, {row['alpha']:.0%} significance (two-sided)",
                f"to see its {rate_label(row['metric'], True)} {_move(row['metric'])} from "
                f"{_pct(row['current_rate'], 2)} to {_pct(row['target_rate'], 2)}; about "
                f"{_days(row['days'])} of this message's sends"))
    if len(numbers) < 3:
        sent = int(findings.rates.loc[findings.rates["metric"] == "delivery_rate", "trials"].sum())
        numbers.append(rp.KeyNumber("Messages sent in the window", rp.format_count(sent),
                                    "counted, not estimated",
                                    f"{findings.rates['action_id'].nunique()} messages"))
    return numbers


def _name_of(findings: Findings, action_id: Any) -> str:
    rows = findings.messages[findings.messages["action_id"].astype(int) == int(action_id)]
    return str(rows["name"].iloc[0]) if not rows.empty else "message"


def _move(metric: str) -> str:
    return "rise" if rate_definition(metric).higher_is_better else "fall"


def _days(days: Any) -> str:
    if days is None or (isinstance(days, float) and not math.isfinite(days)) or pd.isna(days):
        return "an unknown number of days"
    return "1 day" if int(days) == 1 else f"{int(days):,} days"


def decisions(findings: Findings, strategy: Strategy, ranked: pd.DataFrame, plan: pd.DataFrame,
              skipped: Sequence[SkippedStep] = ()) -> list[str]:
    """Concrete next steps, most important first, as plain text (escape for the sink)."""
    steps = []
    for row in plan.itertuples(index=False):
        who = _quoted(row.name, row.action_id)
        # "569 deliveries per variant (1,138 in all, about 2 days of its sends) for 80% power to see
        # its human click rate rise from 1.38% to 3.98%"
        size = (f"{int(row.per_variant):,} deliveries per variant ({int(row.total):,} in all, about "
                f"{_days(row.days)} of its sends) for {row.power:.0%} power to see its "
                f"{rate_label(row.metric, True)} {_move(row.metric)} from "
                f"{_pct(row.current_rate, 2)} to {_pct(row.target_rate, 2)}"
                if pd.notna(row.per_variant) else "")
        if row.variation_id and math.isfinite(row.lift_vs_current) and row.lift_vs_current > 0:
            steps.append(f"A/B test variation {row.variation_id} of {who} against the current copy "
                         f"on {rate_label(row.metric, True)}" + (f": {size}." if size else "."))
        elif row.variation_id:
            steps.append(f"No new copy for {who} beat the current one with the personas: brief a "
                         "copywriter with Mave's strategy, then A/B test the new copy"
                         + (f"; that takes {size}." if size else "."))
        else:
            steps.append(f"No new copy was scored for {who} (see the credits section)"
                         + (f"; an A/B test of new copy takes {size}." if size else "."))
    unrewritten = findings.flagged[~findings.flagged["action_id"].isin(findings.messages["action_id"])]
    if not unrewritten.empty:
        steps.append(f"{unrewritten['action_id'].nunique()} more flagged message(s) were not "
                     "rewritten: raise max_underperformers to include them.")
    if findings.flagged.empty:
        steps.append("Nothing underperforms: re-run with a longer window (days) or a single channel "
                     "to look for smaller effects.")
    if skipped:
        steps.append("Raise max_credits and re-run: cached answers cost nothing, so only the "
                     f"{len(skipped)} skipped call(s) will be paid for.")
    return steps


def summary(findings: Findings, strategy: Strategy, ranked: pd.DataFrame, plan: pd.DataFrame,
            skipped: Sequence[SkippedStep] = ()) -> rp.ReportHtml:
    """The top block: key numbers with their uncertainty, then the decisions they support."""
    return rp.summary_block(key_numbers(findings, ranked, plan),
                            decisions(findings, strategy, ranked, plan, skipped)[:4])


def what_changed(results: Mapping[str, Any]) -> str:
    """Markdown: what is new since the previous run of the same job, parameters and workspace."""
    return changes_markdown(results.get("changes") or {"first_run": True})


def next_steps(findings: Findings, strategy: Strategy, ranked: pd.DataFrame, plan: pd.DataFrame,
               skipped: Sequence[SkippedStep] = ()) -> str:
    """Markdown: every next step (the summary shows the first four)."""
    steps = decisions(findings, strategy, ranked, plan, skipped)
    if strategy.content:
        steps.append("Share Mave's strategy with the copywriters; the persona scores show which "
                     "audiences each direction wins or loses.")
    steps.append("Re-run this report with the same parameters after the test ends: the "
                 "\"what changed\" section will say which flags recovered.")
    return "\n".join(f"{i}. {md(step)}" for i, step in enumerate(steps, 1))


# ---- sentences -----------------------------------------------------------------------------


def underperformer_sentence(findings: Findings) -> str:
    """What the chart and table show, in one or two sentences."""
    tested = findings.tests[findings.tests["reason"].isna()]
    untested = int(findings.tests["reason"].notna().sum())
    note = f" {untested:,} (message, rate) pairs had too little data to test." if untested else ""
    if findings.flagged.empty:
        return (f"None of the {len(tested):,} tests across {tested['action_id'].nunique()} messages "
                f"shows a material shortfall after the false-discovery-rate correction.{note}")
    messages = findings.flagged.drop_duplicates("action_id")
    listing = "; ".join(
        f"{_mquoted(row.name, row.action_id)}, {md(channel_name(row.channel))}: " + ", ".join(
            f"{rate_label(r.metric, True)} {_pct(r.rate)} against a typical {_pct(r.baseline)} "
            f"({rp.format_p(r.p_adjusted, 'adjusted p')})"
            for r in findings.flagged[findings.flagged["action_id"] == row.action_id].itertuples(index=False))
        for row in messages.itertuples(index=False))
    return (f"{len(findings.flagged)} of {len(tested):,} tests flag {len(messages)} messages as "
            f"significantly and materially worse than a typical message of their channel: "
            f"{listing}.{note}")


def funnel_sentence(findings: Findings) -> str:
    """The range of the human click rate per channel, against the channel's typical message."""
    rates = findings.rates[(findings.rates["metric"] == "human_click_rate") & (findings.rates["trials"] > 0)]
    if rates.empty:
        return "No message had deliveries in this window."
    typical = findings.spreads[findings.spreads["metric"] == "human_click_rate"].set_index("channel")
    parts = []
    for channel, group in rates.groupby("channel", sort=True):
        low, high = group.loc[group["rate"].idxmin()], group.loc[group["rate"].idxmax()]
        centre = (f", typical message {_pct(typical.loc[channel, 'typical_rate'])}"
                  if channel in typical.index else "")
        parts.append(f"{md(channel_name(channel))} from {_pct(low['rate'])} "
                     f"({_mquoted(low['name'], low['action_id'])}) to {_pct(high['rate'])} "
                     f"({_mquoted(high['name'], high['action_id'])}){centre}")
    sent = int(findings.rates.loc[findings.rates["metric"] == "delivery_rate", "trials"].sum())
    return (f"{findings.rates['action_id'].nunique()} messages were sent {sent:,} times in the window. "
            "Human click rate by channel: " + "; ".join(parts) + ".")


def spread_sentence(findings: Findings, metric: str = "human_click_rate") -> str:
    """How much typical messages of each channel differ on `metric`, from the fitted spreads."""
    rows = findings.spreads[findings.spreads["metric"] == metric]
    if rows.empty:
        return f"Too few messages to describe how they differ on {rate_label(metric, True)}."
    parts = [f"{md(channel_name(r.channel))} {_pct(r.typical_rate, 2)} (typical messages "
             f"{_pct(r.typical_low, 2)}–{_pct(r.typical_high, 2)}, {r.messages} messages)"
             for r in rows.itertuples(index=False)]
    spread = rows["spread_cv"].astype(float).median()
    return (f"Typical {rate_label(metric, True)} by channel: " + "; ".join(parts) + ". Ordinary "
            f"messages differ by about ±{spread:.0%} of their channel's rate, which is why only "
            "messages outside that range can be underperformers.")


def trend_sentence(findings: Findings) -> str:
    """How the channel's rate (all its sends together) moved from the first to the last period."""
    trend = findings.trend
    if trend.empty:
        return "No trend: there are no metrics in the window."
    label = rate_label(findings.trend_rate, True)
    parts = []
    for channel, rows in trend.sort_values("period_start").groupby("channel", sort=True):
        rows = rows[rows["trials"] > 0]
        if len(rows) < 2:
            continue
        first, last = rows.iloc[0], rows.iloc[-1]
        overlap = first["ci_low"] <= last["ci_high"] and last["ci_low"] <= first["ci_high"]
        verdict = "within noise" if overlap else ("up" if last["rate"] > first["rate"] else "down")
        parts.append(f"{md(channel_name(channel))} {_pct(first['rate'], 2)} → "
                     f"{_pct(last['rate'], 2)} ({verdict})")
    if not parts:
        return f"Too few periods to describe a trend in {label}."
    return (f"The {label} of all of a channel's sends, first to last period: " + "; ".join(parts)
            + ". Periods whose 95% bands overlap are not a real change.")


def variations_sentence(findings: Findings, ranked: pd.DataFrame) -> str:
    """Per message: the winner, its score and whether it beats the live copy."""
    if ranked.empty:
        return "No variations were scored."
    parts = []
    for action_id, rows in ranked.groupby("action_id", sort=False):
        top = rows.iloc[0]
        beat = sum(1 for v in rows["lift_vs_current"] if math.isfinite(v) and v > 0)
        comparison = ("" if not math.isfinite(top["lift_vs_current"]) else
                      f", {beat} of {len(rows)} beat the current copy")
        parts.append(f"{_mquoted(_name_of(findings, action_id), action_id)}: variation "
                     f"{md(top['variation_id'])} leads with {top['mean_score']:.1f}/10{comparison}")
    return "; ".join(parts) + ". Persona scores are a screen before an A/B test, not a substitute for one."


def variation_title(text: str) -> str:
    """Markdown: a bold line naming one rewritten message above its table (its name escaped). Not a
    heading, so the contents list stays short enough to leave the summary on the first screen."""
    return f"**{md(text)}**"


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


def checks_markdown(findings: Findings) -> str:
    """Markdown bullets: each assumption, how it was checked on this data, the result, what follows."""
    return "\n".join(f"- **{md(r.assumption)}** Checked with: {md(r.check)}. On this data: "
                     f"{md(r.result)}. So: {md(r.consequence)}."
                     for r in findings.checks.itertuples(index=False))


def checks_table(findings: Findings) -> pd.DataFrame:
    """The test's assumptions, how each was checked on this data, the result and what follows."""
    table = findings.checks.rename(columns={"assumption": "Assumption", "check": "How it was checked",
                                            "result": "On this data", "consequence": "What the test does"})
    return table.set_index("Assumption")


# ---- Mave, credits, glossary ---------------------------------------------------------------

_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_SETEXT_RULE = re.compile(r"^ {0,3}(?:=+|-+)\s*$")


def _demote_headings(markdown: str) -> str:
    """Headings inside outside text become bold lines, so they never join the report's contents."""
    lines = []
    for line in markdown.splitlines():
        heading = _ATX_HEADING.match(line)
        if heading:
            lines.append(f"**{heading.group(1)}**" if heading.group(1) else "")
        elif _SETEXT_RULE.match(line):
            lines.append("")  # "Title\n---" would be a heading; a blank line keeps it a paragraph
        else:
            lines.append(line)
    return "\n".join(lines)


def strategy_markdown(strategy: Strategy, max_sources: int = 5) -> str:
    """Mave's answer as Markdown (its text escaped, headings demoted), then its sources: http(s)
    links only, titles as text."""
    if strategy.skipped or not strategy.content:
        return f"_Mave was not asked: {md(strategy.skipped or 'no answer')}._"
    lines = [_demote_headings(md_block(strategy.content.strip()))]
    if strategy.sources:
        lines += ["", "**Sources Mave cited**", ""]
        for source in strategy.sources[:max_sources]:
            title = md(source.get("title") or source.get("url") or "source")
            url = safe_url(source.get("url"))
            if url:
                lines.append(f"- [{title}]({url.replace('(', '%28').replace(')', '%29')})")
            else:
                lines.append(f"- {title}" + (" (its link is not an http(s) address, so it is not "
                                             "shown)" if source.get("url") else ""))
    cost = "from cache, no credits" if strategy.cached else f"{strategy.credits:,} credits"
    lines += ["", f"_Mave thread {md(strategy.thread_id or 'n/a')} ({cost})._"]
    return "\n".join(lines)


def credits_markdown(run: RunContext) -> str:
    """The credits section (`credits_section`, which escapes the skipped calls' text), with
    thousands separators."""
    budget = {k: rp.format_count(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
              for k, v in run.budget.summary().items()}
    return credits_section(budget, run.skipped, cache_hits=run.mavera_stats().get("cache_hits"))


GLOSSARY_EXTRA = {
    "Human open, human click": "Opens and clicks by people: machine opens (mail-privacy prefetch) "
                               "and scanners' clicks are left out, and deliveries whose opens or "
                               "links were not tracked leave the denominator.",
    "Typical message": "What a message of the channel with nothing wrong would show: the centre of "
                       "the channel's messages on that rate (a random-effects model), fitted "
                       "without the message under test.",
    "Typical range": "Where 95% of the channel's ordinary messages lie. Messages differ in "
                     "content, audience and timing, so only a rate outside this range is unusual.",
    "Shrunken rate": "A message's rate pulled towards its channel's typical rate in proportion to "
                     "how noisy it is: the best single guess of its true rate (empirical Bayes).",
    "Persona score": "How well a Mavera persona says a message works for them (1 to 10), with its "
                     "estimated chance of opening and clicking: a screen before an A/B test, not "
                     "a measurement of customers.",
    "A/B test size": "Deliveries each version needs so that a real change as large as the one "
                     "stated is detected 80% of the time (power) with a 5% chance of a false "
                     "alarm (significance), by a two-proportion test.",
}


def glossary() -> rp.ReportHtml:
    """The terms this report uses."""
    return rp.glossary("Wilson interval", "Adjusted p", "False discovery rate", "Click-to-open rate",
                       extra=GLOSSARY_EXTRA)

