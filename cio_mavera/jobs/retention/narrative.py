"""Job 3 report text: the banner and notices, the summary, a sentence after each section, the
research briefs, what to do next and the glossary.

Every sentence is computed from the run's results (results.json's shape) or objects. Names and copy
from Customer.io and Mavera go through `markup` (`md`, `safe_url`) in Markdown and
through `report_parts` in HTML, so they stay text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cio_mavera.changes import changes_markdown
from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.retention import labels
from cio_mavera.jobs.retention.research import Brief
from cio_mavera.jobs.retention.tables import DEAD_LETTER_REASONS, overall_rate
from cio_mavera.jobs.retention.triggers import DEFAULT_SCALES, TriggerResult
from cio_mavera.markup import md, safe_url

DEAD_LETTERS_LIST = "cio-mavera webhooks dead-letters list"
DEAD_LETTERS_REPLAY = "cio-mavera webhooks dead-letters replay"
FEW_OPT_OUTS = 20  # below this many opt-outs in the log only a large spike can be told from chance
QUIET_LOG = pd.Timedelta(days=2)  # a live log whose newest event is older than this at analysis is stale
_SUMMARY_DECISIONS = 4


# ---- banner and notices ---------------------------------------------------------------------------


def banner(results: Mapping[str, Any]) -> rp.ReportHtml:
    """The sandbox/live banner (workspace, event log, replay, dead letters), then any notices."""
    period, counts = results.get("period") or {}, results.get("event_counts") or {}
    details = {"Workspace": results.get("workspace") or "unknown",
               "Event log": f"{int(counts.get('unique_events') or 0):,} unique events"
                            + (f", {labels.window_text(period['start'], period['end'])} "
                               f"({period['days']:.1f} days)" if period.get("start") else "")}
    replay = (results.get("pipeline") or {}).get("replay") or {}
    if replay:
        details["Replay"] = (f"{int(replay.get('sent') or 0):,} signed webhooks sent to a local receiver, "
                             f"{int(replay.get('acknowledged') or 0):,} acknowledged "
                             f"({int(replay.get('duplicates_acknowledged') or 0):,} duplicates stored once), "
                             f"{int(replay.get('failed') or 0):,} failed")
    dead = results.get("dead_letters") or {}
    details["Dead letters"] = ("could not be read" if dead.get("error")
                               else f"{int(dead.get('waiting') or 0):,} waiting")
    note = None if results.get("mode") == "sandbox" else (
        "Events from the log \"cio-mavera webhooks work\" wrote; research by Mavera's Mave agent.")
    return rp.ReportHtml(rp.mode_banner(str(results.get("mode")), details, note=note)
                         + "".join(notices(results)))


def notices(results: Mapping[str, Any]) -> list[rp.ReportHtml]:
    """Warnings the reader needs before trusting the rest: an empty or too short log for the
    window asked, dead letters waiting, very few opt-outs."""
    out = []
    period, tests = results.get("period") or {}, results.get("tests") or {}
    unique = int((results.get("event_counts") or {}).get("unique_events") or 0)
    if unique == 0:
        return [rp.notice("The event log is empty: no webhooks have been processed yet, so there is "
                          "nothing to analyse. Point a Customer.io reporting webhook at \"cio-mavera "
                          "webhooks serve\" and keep \"cio-mavera webhooks work\" running.")]
    window = float(tests.get("window_hours") or 0)
    longest = window * max(tests.get("scales") or DEFAULT_SCALES)
    days = float(period.get("days") or 0)
    # A window is judged against its campaign's rate outside it and a guard as long as it on either
    # side: with less than three longest windows of history there is no "outside".
    if longest and days * 24 < 3 * longest:
        out.append(rp.notice(
            f"The spike windows (up to {longest:g} h) ask for more history than the log holds "
            f"({days:.1f} days): a window is compared with its campaign's rate outside it and a "
            f"guard as long as it on either side, which needs at least {3 * longest / 24:.1f} days. "
            f"Shorten window_hours or let the log grow before trusting 'no spike'."))
    quiet = _quiet_for(results)
    if quiet is not None:
        out.append(rp.notice(
            f"The newest event in the log is from {pd.Timestamp(period['end']):%Y-%m-%d %H:%M} UTC, "
            f"{quiet / pd.Timedelta(days=1):.1f} days before this analysis: a spike since then is not in "
            "this report. Check that \"cio-mavera webhooks work\" is running and that the Customer.io "
            "reporting webhook still points at \"cio-mavera webhooks serve\"."))
    dead = results.get("dead_letters") or {}
    if dead.get("error"):
        out.append(rp.notice(f"The dead letters could not be read ({dead['error']}); run "
                             f"\"{DEAD_LETTERS_LIST}\" where the receiver's queue is reachable."))
    elif dead.get("waiting"):
        reasons = ", ".join(f"{n:,} {r}" for r, n in (dead.get("by_reason") or {}).items())
        out.append(rp.notice(
            f"{int(dead['waiting']):,} signed webhook(s) could not be used ({reasons}) and are kept as "
            f"dead letters, so their events are missing from this report. See them with "
            f"\"{DEAD_LETTERS_LIST}\"; \"{DEAD_LETTERS_REPLAY}\" queues them again once the parser reads them."))
    opt_outs = int((results.get("opt_out") or {}).get("opt_outs") or 0)
    if opt_outs < FEW_OPT_OUTS:
        out.append(rp.notice(f"Only {opt_outs:,} opt-out(s) are in the log: only a large spike can be "
                             "told from chance with so few.", kind="info"))
    return out


def _quiet_for(results: Mapping[str, Any]) -> pd.Timedelta | None:
    """How long before the analysis a live log fell silent, when longer than `QUIET_LOG` (a sandbox
    log ends where its synthetic workspace does)."""
    end, analysed = (results.get("period") or {}).get("end"), results.get("analysed_at")
    if results.get("mode") != "live" or not end or not analysed:
        return None
    quiet = pd.Timestamp(analysed) - pd.Timestamp(end)
    return quiet if quiet > QUIET_LOG else None


# ---- the summary ----------------------------------------------------------------------------------


def _names(results: Mapping[str, Any]) -> dict[int, str]:
    return {int(t["campaign_id"]): t.get("campaign_name") or "" for t in results.get("triggers") or []
            if t.get("campaign_id") is not None}


def key_numbers(results: Mapping[str, Any]) -> list[rp.KeyNumber]:
    """The 4-5 numbers the reader should leave with, each with its uncertainty."""
    tests, triggers = results.get("tests") or {}, results.get("triggers") or []
    alpha = float(tests.get("alpha") or 0.05)
    numbers = [rp.KeyNumber(
        "Spikes found", f"{len(triggers):,}", f"false discovery rate {rp.format_percent(alpha, 0)}",
        f"{int(tests.get('tests') or 0):,} windows tested, {int(tests.get('testable') or 0):,} of them with "
        "enough events to show one")]
    if triggers:
        top = triggers[0]
        numbers.append(rp.KeyNumber(
            f"Strongest spike: {labels.subject(top, _names(results))}",
            labels.percent_interval(top["rate"], top.get("rate_low"), top.get("rate_high")),
            f"against {labels.percent(top['baseline'])} expected (normal range "
            f"{labels.percent_range(top.get('normal_low'), top.get('normal_high'))}); "
            f"{rp.format_p(top['p_adjusted'], 'adjusted p')}",
            f"{int(top['count']):,} {labels.SIGNAL_WORDS.get(top['metric'], top['metric'])} of "
            f"{int(top['exposure']):,} messages to {labels.tested_audience(top)}, "
            f"{labels.window_text(top['window_start'], top['window_end'])}"))
    opt_out = results.get("opt_out") or {}
    numbers.append(rp.KeyNumber(
        "Opt-out rate, all campaigns",
        labels.percent_interval(opt_out.get("rate"), opt_out.get("low"), opt_out.get("high")),
        "95% interval (Wilson)",
        f"{int(opt_out.get('opt_outs') or 0):,} unsubscribes and spam complaints of "
        f"{int(opt_out.get('delivered') or 0):,} deliveries, whole log"))
    if triggers:
        statuses = [(t.get("brief") or {}).get("status") for t in triggers]
        researched = sum(s in ("asked", "cooldown") for s in statuses)
        confidence = [(t.get("brief") or {}).get("confidence") for t in triggers]
        confidence = [c for c in confidence if c is not None]
        numbers.append(rp.KeyNumber(
            "Spikes with a Mave research brief", f"{researched:,} of {len(triggers):,}",
            (f"Mave's own confidence {rp.format_percent(np.mean(confidence), 0)}" if confidence
             else "no confidence score given"),
            f"{int(results.get('credits_spent') or 0):,} credits spent this run"))
    dead = results.get("dead_letters") or {}
    counts = results.get("event_counts") or {}
    numbers.append(rp.KeyNumber(
        "Webhook events analysed", f"{int(counts.get('unique_events') or 0):,}",
        ("dead letters could not be read" if dead.get("error")
         else f"{int(dead.get('waiting') or 0):,} dead letter(s) not analysed"),
        f"over {float((results.get('period') or {}).get('days') or 0):.1f} days"))
    return numbers[:5]


def decisions(results: Mapping[str, Any]) -> list[str]:
    """What to do next, most important first, as plain text (escaped where shown)."""
    names, steps = _names(results), []
    for t in results.get("triggers") or []:
        audience = labels.tested_audience(t)
        window = labels.window_text(t["window_start"], t["window_end"])
        follow = t.get("follow_up") or {}
        check = ""
        if follow.get("messages"):
            pace = f", about {follow['days']:,.0f} day(s) at the log's pace" if follow.get("days") else ""
            check = (f" After the fix, {follow['messages']:,} messages to {audience} show whether the rate is "
                     f"back near {labels.percent(t['baseline'])} or still half way up to "
                     f"{labels.percent(t['rate'])} (80% power, 5% one-sided{pace}).")
        if t["kind"] == "campaign":
            steps.append(f"Review {labels.campaign_label(names, t['campaign_id'])} for {audience}: "
                         f"{labels.percent(t['rate'])} opted out in {window} against "
                         f"{labels.percent(t['baseline'])} expected. Check what changed before then (copy, "
                         f"frequency, targeting) and pause it for that audience until it is fixed.{check}")
        else:
            steps.append(f"Hand the valuable customers in {audience} who opted out or hard-bounced in {window} "
                         f"({int(t['count']):,} signals) to customer success for a personal check-in.{check}")
    unresearched = [t for t in results.get("triggers") or []
                    if (t.get("brief") or {}).get("status") in ("skipped", "failed", None)]
    if unresearched:
        budget = (results.get("parameters") or {}).get("max_credits")
        steps.append(f"{len(unresearched):,} spike(s) have no research brief: raise max_credits "
                     f"(now {budget}) or re-run after the cooldown.")
    dead = results.get("dead_letters") or {}
    if dead.get("waiting"):
        steps.append(f"{int(dead['waiting']):,} signed webhook(s) are dead letters: look at them with "
                     f"\"{DEAD_LETTERS_LIST}\" and run \"{DEAD_LETTERS_REPLAY}\" once the parser reads them.")
    if not results.get("triggers"):
        steps.append("Nothing spiked beyond what each campaign and audience normally shows. Keep the worker "
                     "running (\"cio-mavera webhooks work\") and re-run this report on a schedule.")
    if results.get("mode") == "sandbox":
        steps.append("This is sandbox data. Connect a real workspace: set the keys, point a Customer.io "
                     "reporting webhook at \"cio-mavera webhooks serve\" and run \"cio-mavera webhooks work\".")
    return steps


def summary(results: Mapping[str, Any]) -> rp.ReportHtml:
    """The top block: the key numbers with their uncertainty, then the first decisions."""
    return rp.summary_block(key_numbers(results), decisions(results)[:_SUMMARY_DECISIONS])


def what_changed(results: Mapping[str, Any]) -> str:
    """Markdown: what is new since the previous run of the same job, parameters and workspace, with
    each spike that fired since then named as the spikes table names it."""
    changes = results.get("changes") or {"first_run": True}
    text = changes_markdown(changes)
    fired = set(changes.get("fired") or [])
    names = _names(results)
    named = [f"- new spike **{md(labels.subject(t, names))}** ({md(labels.tested_audience(t))}, "
             f"{md(labels.window_text(t['window_start'], t['window_end']))}): trigger key {md(t['key'])}"
             for t in results.get("triggers") or [] if t.get("key") in fired]
    return "\n".join([text, *named])


def next_steps(results: Mapping[str, Any]) -> str:
    """Markdown: every next step, numbered."""
    return "\n".join(f"{i}. {md(step)}" for i, step in enumerate(decisions(results), start=1))


# ---- sections -------------------------------------------------------------------------------------


def spikes_sentence(results: Mapping[str, Any]) -> str:
    """How many windows were tested, how, and what stood out."""
    p, triggers = results.get("tests") or {}, results.get("triggers") or []
    widths = " and ".join(f"{p.get('window_hours', 0) * s:g} h" for s in p.get("scales", [1]))
    how = (f"{int(p.get('tests') or 0):,} rolling windows of {widths} (every {p.get('step_hours', 0):g} h for "
           f"the shortest) were compared with what their campaign and audience predict; "
           f"{int(p.get('testable') or 0):,} of them had enough events to be significant, and the "
           f"Benjamini-Hochberg correction at {rp.format_percent(p.get('alpha', 0.05), 0)} ran over those, "
           f"counting overlapping windows of one campaign or audience as one finding, with at least "
           f"{p.get('min_count', 0)} events per window.")
    if not triggers:
        return f"**No spike found.** {how}"
    t = triggers[0]
    subject = md(labels.subject(t, _names(results)))
    audience = (f", concentrated in the audience **{md(t['cluster_name'])}**"
                if t["kind"] == "campaign" and t.get("cluster_name") else "")
    return (f"**{len(triggers)} spike(s) found.** The strongest: **{subject}**{audience}, "
            f"{int(t['count']):,} {labels.SIGNAL_WORDS.get(t['metric'], t['metric'])} from "
            f"{int(t['exposure']):,} messages, "
            f"{md(labels.percent_interval(t['rate'], t.get('rate_low'), t.get('rate_high')))} "
            f"in {md(labels.window_text(t['window_start'], t['window_end']))}, against "
            f"{md(labels.percent(t['baseline']))} expected; windows like it normally show "
            f"{md(labels.percent_range(t.get('normal_low'), t.get('normal_high')))} "
            f"({md(rp.format_p(t['p_adjusted'], 'adjusted p'))}). {how} In each chart below the dashed line "
            "is the expected rate the table gives, the grey band the normal range and the red diamond the "
            "flagged window's rate with its 95% interval.")


def assumptions_sentence(result: TriggerResult) -> str:
    """Plain words: what a window's expected rate is, and that each assumption was checked."""
    floors = result.parameters.get("floors", {})
    return ("A window is judged against what its own campaign sent elsewhere (other days, and other audiences "
            "in the same days), pulled towards its channel's typical rate only as far as the channel's campaigns "
            "are alike, with opt-outs dated by the message they answer, so a broadcast, a busy Monday or a "
            "campaign whose audience always opts out more is not a spike. The table says how much campaigns, "
            "audiences and days vary and whether send time or send size changes the rate; where a few thousand "
            "events cannot show a variation, the tests assume at least as much as real workspaces have: "
            f"campaigns' rates spread with a coefficient of variation (CV) of {floors.get('source_cv', 0):.1f} "
            "(one campaign in twenty opting out three times as readily as the typical one), audiences by "
            f"{floors.get('audience_cv', 0):.0%} and days by {floors.get('day_cv', 0):.0%}.")


def volume_sentence(results: Mapping[str, Any]) -> str:
    """One sentence on the volume and the opt-outs in it."""
    counts = results.get("event_counts") or {}
    if not counts.get("unique_events"):
        return "The event log is empty: no webhooks have been processed yet, so there is nothing to analyse."
    by = counts.get("by_metric") or {}
    days = float((results.get("period") or {}).get("days") or 0)
    return (f"The log holds **{int(counts['unique_events']):,} events** over {days:.1f} days: "
            f"{by.get('delivered', 0):,} deliveries, {by.get('unsubscribed', 0):,} unsubscribes, "
            f"{by.get('spammed', 0):,} spam complaints and {by.get('bounced', 0):,} bounces.")


def campaign_sentence(rates: pd.DataFrame, names: Mapping[int, str]) -> str:
    """Which campaign has the highest whole-period opt-out rate, against all campaigns together."""
    if rates.empty or rates["delivered"].sum() == 0:
        return "No campaign deliveries are in the log yet."
    top, overall = rates.iloc[0], overall_rate(rates)
    return (f"Over the whole log **{md(labels.campaign_label(names, rates.index[0]))}** has the highest "
            f"opt-out rate, {md(labels.percent(top['opt_out_rate']))} of {int(top['delivered']):,} deliveries, "
            f"against {md(labels.percent(overall))} for all campaigns together (the dashed line and the "
            "table's last row). Whole-period rates dilute a short spike and mix campaigns whose audiences "
            "always opt out more, which is why spikes are tested per window against each campaign's own rate.")


def cluster_sentence(rates: pd.DataFrame, names: Mapping[int, str], cluster_info: Mapping[str, Any]) -> str:
    """Which audience opts out most, and where the clusters came from."""
    if rates.empty:
        return md(f"No audience clusters are available ({cluster_info.get('reason', 'no attributes')}).")
    top = rates.iloc[0]
    source = {"job-2 assignments": "the attribute-personas job's clusters",
              "fitted on the people in the event log": "clustered here from the attributes of the people "
                                                       "in the event log, as the attribute-personas job does"}
    return (f"The {cluster_info.get('k', len(rates))} audience clusters "
            f"({md(source.get(cluster_info.get('source'), cluster_info.get('source', '')))}) differ: "
            f"**{md(names.get(int(rates.index[0]), labels.audience_label(None)))}** opts out most, "
            f"{md(labels.percent(top['opt_out_rate']))} of "
            f"{int(top['delivered']):,} deliveries, against {md(labels.percent(overall_rate(rates)))} for all "
            f"audiences; {md(rp.format_percent(top['valuable_share'], 0))} of its people are on valuable plans.")


# ---- research briefs ------------------------------------------------------------------------------


_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_SETEXT_RULE = re.compile(r"^ {0,3}(?:=+|-+)\s*$")
_LIST_ITEM = re.compile(r"^(\s*)(?:[-*+]|(\d{1,3})[.)])\s+(.*)$")
_WHOLE_LINE = re.compile(r"^\s*(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1\s*$")  # a line in bold or italics


def _brief_text(content: str) -> str:
    """Mave's answer as Markdown: its paragraphs, list items and whole bold or italic lines kept,
    everything in them text (it echoes the campaign's and the audience's names), its headings bold
    lines outside the contents."""
    lines = []
    for line in str(content).strip().splitlines():
        heading, item = _ATX_HEADING.match(line), _LIST_ITEM.match(line)
        if heading:
            lines.append(f"**{md(heading.group(1))}**" if heading.group(1).strip() else "")
        elif _SETEXT_RULE.match(line):
            lines.append("")  # "Title\n---" would be a heading; a blank line keeps it a paragraph
        elif item:
            marker = f"{item.group(2)}." if item.group(2) else "-"
            lines.append(f"{item.group(1)}{marker} {md(item.group(3))}")
        elif _WHOLE_LINE.match(line):  # Mave's own bold or italic line: kept, its text escaped
            emphasis, inner = _WHOLE_LINE.match(line).groups()
            lines.append(f"{'**' if len(emphasis) == 2 else '*'}{md(inner)}{'**' if len(emphasis) == 2 else '*'}")
        else:
            lines.append(md(line))
    return "\n".join(lines)


def _source_link(source: Mapping[str, Any]) -> str:
    title = md(source.get("title") or "source")
    url = safe_url(source.get("url"))
    if url is None:
        return f"{title} (link left out: not a web address)"
    # Brackets would end the Markdown link early; encoded, the address is the same.
    return f"[{title}]({url.replace('(', '%28').replace(')', '%29')})"


def briefs_markdown(briefs: Sequence[Brief], campaign_names: Mapping[int, str] | None = None) -> str:
    """Each brief: the spike, Mave's content (as text: lists and paragraphs kept, nothing else markup),
    its sources (web links only) and confidence, or why there is none."""
    if not briefs:
        return "No spike, so no research was requested."
    names, parts = campaign_names or {}, []
    for b in briefs:
        t = b.trigger
        audience = (f" — audience: {md(t['cluster_name'])}" if t.get("kind") == "campaign"
                    and t.get("cluster_name") else "")
        status = {"asked": "asked Mave this run",
                  "cooldown": f"not asked again ({md(b.reason)})",
                  "skipped": f"**skipped**: {md(b.reason)}",
                  "failed": f"**failed**: {md(b.reason)}"}.get(b.status, md(b.status))
        confidence = (f" · Mave's confidence {rp.format_percent(b.confidence, 0)}"
                      if b.confidence is not None else "")
        # A bold line, not a heading: the contents list stays short enough to leave the summary on
        # the first screen however many spikes there are.
        lines = [f"**{md(labels.subject(t, names))}{audience}**", "",
                 f"*Trigger {md(b.key)} · {status}{confidence} · {b.credits:,} credits*", ""]
        if b.content:
            lines += [_brief_text(b.content), ""]
        if b.sources:
            lines.append("**Sources:** " + "; ".join(_source_link(s) for s in b.sources[:6]))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def credits_notes(briefs: Sequence[Brief]) -> tuple[str, str]:
    """(what the credits bought, the cooldown note) for the shared credits section."""
    asked = sum(1 for b in briefs if b.status == "asked")
    cooled = sum(1 for b in briefs if b.status == "cooldown")
    return (f"on {asked} Mave request(s)",
            f"{cooled} trigger(s) were inside their cooldown and reused the earlier brief at no cost.")


# ---- dead letters, glossary -----------------------------------------------------------------------


def dead_letters_markdown(results: Mapping[str, Any]) -> str:
    """Markdown: the signed webhooks the parser could not use, and what to run."""
    dead = results.get("dead_letters") or {}
    if dead.get("error"):
        return (f"The receiver's queue could not be read here ({md(dead['error'])}), so dead letters are not "
                f"counted. Run `{DEAD_LETTERS_LIST}` where the queue is reachable.")
    waiting = int(dead.get("waiting") or 0)
    replayed = int(dead.get("replayed") or 0)
    if not waiting:
        return ("Every signed webhook the receiver accepted could be parsed: **no dead letters** are waiting"
                + (f" ({replayed:,} earlier ones were replayed)." if replayed else "."))
    unknown = [r for r in dead.get("by_reason") or {} if r not in DEAD_LETTER_REASONS]
    return (f"**{waiting:,} signed webhook(s)** could not be used and wait as dead letters (raw body and "
            f"reason kept, answered 200 so Customer.io keeps sending), from {md(dead.get('oldest'))} to "
            f"{md(dead.get('newest'))}. Their events are not in this report. List them with "
            f"`{DEAD_LETTERS_LIST}`; once the parser reads their shape, `{DEAD_LETTERS_REPLAY}` queues them "
            "again and the worker adds them to the log."
            + (f" Reasons not described below: {md(', '.join(unknown))}." if unknown else ""))


GLOSSARY_EXTRA = {
    "Opt-out rate": "Unsubscribes plus spam complaints per delivered message. An opt-out is dated by "
                    "the delivery it answers, so late replies to an evening send count for that send.",
    "Spike": "A window in which a campaign's opt-outs (or valuable customers' churn signals) are "
             "significantly above what that campaign and audience normally show, after correcting "
             "for the number of windows tested.",
    "Expected rate": "What the spike test expected for the window's messages: the campaign's own "
                     "rate outside the window, pulled towards its channel's typical rate only as far "
                     "as campaigns are alike.",
    "Normal range": "The rates 95% of windows with the same messages would show if nothing were "
                    "wrong, from the same model as the test (it includes how much audiences and days "
                    "vary).",
    "Churn signal": "An unsubscribe, spam complaint or hard bounce from a customer on a valuable plan.",
    "Audience cluster": "A group of customers with similar attributes, named as in the "
                        "attribute-personas report.",
    "Dead letter": "A correctly signed webhook whose body the parser could not use, kept with the "
                   "reason and answered 200 so Customer.io keeps delivering the rest.",
    "Cooldown": "How long a spike is not researched again; a re-run within it reuses the earlier "
                "brief at no cost.",
}


def glossary() -> rp.ReportHtml:
    """The terms this report uses."""
    return rp.glossary("Wilson interval", "Adjusted p", "False discovery rate", extra=GLOSSARY_EXTRA)
