"""Job 1 orchestration: campaign metrics -> underperformers -> Mave strategy -> persona-scored variations.

The notebook calls these functions in order; each is a few lines over `datasets`, `campaign_stats`
and `MaveraClient`. Only aggregates and message copy (subject, preheader, an excerpt of the body)
ever leave for Mavera, and every payload is checked with `pii.assert_no_pii` first. When the run's
credit budget refuses a call, the step records what it skipped and the run carries on, so the
report can say what it left out.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cio_mavera import datasets
from cio_mavera.connect import Connection
from cio_mavera.errors import BudgetExceeded, CioMaveraError, CreditsExhausted, InvalidParameter
from cio_mavera.jobs import campaign_stats
from cio_mavera.pii import EMAIL_RE, assert_no_pii

__all__ = [
    "SCORE_SCHEMA",
    "CampaignData",
    "Findings",
    "SkippedStep",
    "Strategy",
    "Variation",
    "analyse",
    "ask_mave_for_strategy",
    "campaign_results",
    "choose_personas",
    "draft_variations",
    "findings_summary",
    "generate_variations",
    "load_campaign_data",
    "parse_variation",
    "rank_variations",
    "resolve_window",
    "score_variations",
]

JOB = "campaign-messaging"
CHANNEL_ALIASES = {"sms": "twilio", "text": "twilio", "in-app": "in_app"}
CURRENT = "current"  # variation_id of the message's live copy, scored as the control
_BODY_EXCERPT_CHARS = 400
_PREHEADER_CHARS = 110
_LISTING_MAX_AGE = dt.timedelta(hours=24)
ValidationMode = Literal["responses", "focus_group"]


class JobInputError(CioMaveraError, ValueError):
    """A job parameter is out of range or inconsistent (raised before any request)."""


# --- data --------------------------------------------------------------------------------------


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
                       campaign_ids: Iterable[int] = (), refresh: bool = False) -> CampaignData:
    """Campaigns, actions and daily action metrics for the window, through the parquet cache.

    Metrics are pulled for every campaign so each channel's baseline is the whole workspace; the
    channel and campaign filters apply to which messages are reported (see `analyse`).
    """
    lo, hi = resolve_window(days, start, end)
    channel = normalise_channel(channel)
    wanted = sorted({int(c) for c in campaign_ids or ()})
    # metrics() pulls actions and campaigns itself (refreshing them too when asked), so read them after.
    metrics = datasets.metrics(conn, lo, hi, res="days", tz="UTC", refresh=refresh)
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


# --- analysis ----------------------------------------------------------------------------------


@dataclass
class Findings:
    """Rates, baselines, tests, trend and the underperforming messages chosen for new copy."""

    rates: pd.DataFrame
    baselines: pd.DataFrame
    tests: pd.DataFrame
    flagged: pd.DataFrame
    messages: pd.DataFrame
    trend: pd.DataFrame
    funnel: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    channel: str
    campaign_ids: list[int]
    alpha: float
    min_trials: int
    min_relative_drop: float
    trend_rate: str


def analyse(data: CampaignData, *, max_underperformers: int = 3, alpha: float = 0.05,
            min_trials: int = 500, min_relative_drop: float = 0.10,
            trend_rate: str = "human_click_rate") -> Findings:
    """Funnel rates, channel baselines, FDR-corrected underperformers and the trend for `data`.

    Every action of the chosen channel(s) is tested against the rest of its channel, and the
    Benjamini-Hochberg correction covers all of those tests; a campaign filter then only narrows
    which flags are reported, which keeps the correction conservative.
    """
    if max_underperformers < 0:
        raise JobInputError("max_underperformers must be >= 0")
    actions, metrics = data.actions, data.metrics
    if data.channel != "all":
        actions = actions[actions["channel"] == data.channel]
        keep = metrics["action_id"].isna() | metrics["action_id"].isin(actions["action_id"])
        metrics = metrics[keep]
    rates = campaign_stats.action_rates(metrics, actions, start=data.start, end=data.end)
    baselines = campaign_stats.channel_baselines(rates)
    tests = campaign_stats.find_underperformers(rates, alpha=alpha, min_trials=min_trials,
                                                min_relative_drop=min_relative_drop)
    in_scope = _in_campaigns(tests, data.campaign_ids)
    flagged = tests[in_scope & tests["flagged"].astype(bool)].reset_index(drop=True)
    messages = _underperforming_messages(flagged, data.actions, max_underperformers)
    window = metrics[pd.to_datetime(metrics["bucket_start"], utc=True).between(
        data.start, data.end, inclusive="left")]
    freq = "D" if data.days <= 21 else "W"
    trend = campaign_stats.daily_trend(window, actions, rate=trend_rate, freq=freq)
    funnel = campaign_stats.funnel_table(rates[_in_campaigns(rates, data.campaign_ids)])
    return Findings(rates, baselines, tests, flagged, messages, trend, funnel, data.start, data.end,
                    data.channel, data.campaign_ids, alpha, min_trials, min_relative_drop, trend_rate)


def _in_campaigns(frame: pd.DataFrame, campaign_ids: Sequence[int]) -> pd.Series:
    if not campaign_ids:
        return pd.Series(True, index=frame.index)
    return frame["campaign_id"].astype("int64").isin(list(campaign_ids))


def _underperforming_messages(flagged: pd.DataFrame, actions: pd.DataFrame, limit: int) -> pd.DataFrame:
    """One row per flagged message, strongest evidence first, with its copy; at most `limit` rows."""
    columns = ["campaign_id", "action_id", "channel", "name", "subject", "preheader_text", "body",
               "metrics", "min_p_adjusted", "worst_relative_difference"]
    if flagged.empty or limit == 0:
        return pd.DataFrame(columns=columns)
    shortfall = np.where(flagged["higher_is_better"].astype(bool), -flagged["relative_difference"],
                         flagged["relative_difference"]).astype(float)
    scored = flagged.assign(_shortfall=shortfall)
    grouped = (scored.groupby(["campaign_id", "action_id", "channel"], sort=False)
               .agg(metrics=("metric", list), min_p_adjusted=("p_adjusted", "min"),
                    worst_relative_difference=("_shortfall", "max"))
               .reset_index())
    grouped["worst_relative_difference"] = -grouped["worst_relative_difference"]
    grouped = grouped.sort_values(["min_p_adjusted", "worst_relative_difference", "action_id"],
                                  kind="stable").head(limit)
    copy = actions.drop_duplicates("action_id")[
        ["action_id", "name", "subject", "preheader_text", "body"]].copy()
    copy["action_id"] = copy["action_id"].astype("int64")
    grouped["action_id"] = grouped["action_id"].astype("int64")
    merged = grouped.merge(copy, on="action_id", how="left")
    for column in ("name", "subject", "preheader_text", "body"):
        merged[column] = merged[column].fillna("").astype(str)
    return merged[columns].reset_index(drop=True)


# --- the PII-free summary sent to Mave ---------------------------------------------------------


# Phone shapes `pii` detects (E.164 with a leading "+", or the separated North American form).
_PHONE_LIKE = re.compile(r"(?<![\w+])\+\d[\d\s().-]{5,22}\d(?![\w])"
                         r"|(?<![\d\w])\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\d\w])")


def redact_contacts(text: str) -> str:
    """`text` with email addresses and phone numbers replaced by [email] and [phone].

    Copy often carries a support address or a sender number; a pattern cannot tell those from a
    customer's, so none of them leaves for Mavera.
    """
    return _PHONE_LIKE.sub("[phone]", EMAIL_RE.sub("[email]", text or ""))


def body_excerpt(body: str, limit: int = _BODY_EXCERPT_CHARS) -> str:
    """Message body as plain text: tags, Liquid placeholders and contact details removed, truncated."""
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", " ", body or "", flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = re.sub(r"\s+", " ", text).strip()
    text = redact_contacts(re.sub(r"\s+([,.;:!?])", r"\1", text))
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + "…"


def findings_summary(findings: Findings) -> dict[str, Any]:
    """Compact, PII-free aggregates for Mave: channel baselines and the underperformers with their copy."""
    tested = findings.tests[findings.tests["reason"].isna()]
    baselines = {
        channel: {row.metric: _round(row.rate) for row in group.itertuples(index=False)}
        for channel, group in findings.baselines.groupby("channel", sort=True)
    }
    messages = []
    for row in findings.messages.itertuples(index=False):
        rows = findings.flagged[findings.flagged["action_id"].astype("int64") == int(row.action_id)]
        messages.append({
            "campaign_id": int(row.campaign_id),
            "action_id": int(row.action_id),
            "channel": row.channel,
            "message_name": redact_contacts(row.name),
            "subject": redact_contacts(row.subject),
            "preheader": redact_contacts(row.preheader_text),
            "body_excerpt": body_excerpt(row.body),
            "shortfalls": [{
                "metric": r.metric,
                "rate": _round(r.rate),
                "channel_baseline": _round(r.baseline),
                "relative_difference": _round(r.relative_difference, 3),
                "p_adjusted": _sig(r.p_adjusted),
                "trials": int(r.trials),
            } for r in rows.itertuples(index=False)],
        })
    summary = {
        "window": {"start": f"{findings.start:%Y-%m-%d}",
                   "end_exclusive": f"{findings.end:%Y-%m-%d}"},
        "channel_filter": findings.channel,
        "method": (f"each message vs the rest of its channel, one-sided two-proportion test, "
                   f"Benjamini-Hochberg FDR {findings.alpha}, at least {findings.min_trials} trials, "
                   f"flagged when at least {findings.min_relative_drop:.0%} worse"),
        "messages_tested": int(tested["action_id"].nunique()),
        "flags": int(len(findings.flagged)),
        "channel_baselines": baselines,
        "underperformers": messages,
    }
    assert_no_pii(summary, what="the findings summary for Mave")
    return summary


def _round(value: Any, digits: int = 4) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def _sig(value: Any) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return float(f"{float(value):.3g}")


# --- skipped calls -----------------------------------------------------------------------------


@dataclass
class SkippedStep:
    """A Mavera call the run did not make, and why (budget, credits, timeout)."""

    step: str
    what: str
    reason: str


_SKIPPABLE = (BudgetExceeded, CreditsExhausted)


def _skip(skipped: list[SkippedStep] | None, step: str, what: str, exc: Exception | str) -> None:
    if skipped is not None:
        skipped.append(SkippedStep(step, what, exc if isinstance(exc, str) else skip_reason(exc)))


def skip_reason(exc: Exception) -> str:
    """A short, reader-facing reason for a call that was not made."""
    if isinstance(exc, BudgetExceeded):
        return (f"over budget: could cost up to {exc.needed} credits, {exc.remaining} of max_credits left")
    if isinstance(exc, CreditsExhausted):
        return "Mavera answered 402: no credits left on the account or workspace budget"
    return str(exc)


def _skippable() -> tuple[type[Exception], ...]:
    from cio_mavera.mavera.errors import FocusGroupTimeout

    return (*_SKIPPABLE, FocusGroupTimeout)


# --- Mave strategy -----------------------------------------------------------------------------


@dataclass
class Strategy:
    """Mave's diagnosis and messaging strategy (empty `content` when the call was skipped)."""

    content: str
    key_points: list[str]
    sources: list[dict[str, Any]]
    thread_id: str | None
    credits: int
    cached: bool = False
    skipped: str | None = None


def strategy_prompt(summary: Mapping[str, Any]) -> str:
    """The message asking Mave for a diagnosis and a strategy, with the summary as JSON."""
    return (
        "You are advising the lifecycle marketing team of a product that sends email, push and SMS "
        "campaigns through Customer.io. The JSON below summarises the last "
        f"{summary['window']['start']} to {summary['window']['end_exclusive']} of message metrics "
        "(no customer data). Each underperformer is significantly worse than the rest of its "
        "channel on the listed rates.\n"
        "1. Diagnose the most likely reasons each underperformer falls short, from its copy and "
        "rates.\n"
        "2. Recommend a messaging strategy: three to five principles, and for each underperformer "
        "a direction for a new subject line, preheader and body.\n"
        "3. Say what to A/B test first and which metric decides it.\n\n"
        "Summary:\n" + json.dumps(summary, indent=1, sort_keys=True)
    )


def ask_mave_for_strategy(client: Any, summary: Mapping[str, Any], *,
                          skipped: list[SkippedStep] | None = None) -> Strategy:
    """Ask the Mave agent for a diagnosis and strategy; a refused call returns an empty Strategy."""
    if not summary.get("underperformers"):
        return Strategy("", [], [], None, 0, skipped="no underperformers, so nothing to diagnose")
    message = strategy_prompt(summary)
    assert_no_pii(message, what="the Mave strategy request")
    try:
        answer = client.mave(message)
    except _skippable() as exc:
        _skip(skipped, "strategy", "Mave diagnosis and strategy", exc)
        return Strategy("", [], [], None, 0, skipped=str(exc))
    return Strategy(answer.content, strategy_key_points(answer.content), list(answer.sources),
                    answer.thread_id, int(answer.credits), bool(getattr(answer, "cached", False)))


_HEADING = re.compile(r"^\s*(?:#+\s*|\*\*)?(recommend|strateg|principle|next step|action)", re.I)
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)")


def strategy_key_points(text: str, limit: int = 3, max_chars: int = 160) -> list[str]:
    """Up to `limit` short points from a strategy: the list items under a recommendations-like heading,
    else the first list items, else the first sentences."""
    lines = (text or "").splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if _HEADING.match(line)), None)
    candidates = lines[start:] if start is not None else lines
    points = [_ITEM.match(line).group(1) for line in candidates if _ITEM.match(line)]
    if not points and start is not None:
        points = [_ITEM.match(line).group(1) for line in lines if _ITEM.match(line)]
    if not points:
        points = re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text or "").strip())
    cleaned = []
    for point in points:
        point = re.sub(r"\*\*|__|`", "", point).replace("[sandbox]", "").strip()
        if point:
            cleaned.append(point if len(point) <= max_chars else point[:max_chars - 1].rsplit(" ", 1)[0] + "…")
    return cleaned[:limit]


# --- variations --------------------------------------------------------------------------------


@dataclass
class Variation:
    """One proposed message: subject, preheader and a body outline (subject is the title for push)."""

    action_id: int
    variation_id: str
    channel: str
    subject: str
    preheader: str
    body_outline: list[str]
    source: str

    def as_text(self) -> str:
        """The variation as a recipient would see it, for scoring."""
        parts = []
        if self.subject:
            parts.append(f"{'Title' if self.channel == 'push' else 'Subject'}: {self.subject}")
        if self.preheader:
            parts.append(f"Preheader: {self.preheader}")
        if self.body_outline:
            parts.append("Body:\n" + "\n".join(f"- {line}" for line in self.body_outline))
        return "\n".join(parts)


def current_copy(message: Mapping[str, Any] | Any) -> Variation:
    """The message's live copy as a Variation (`variation_id="current"`), scored as the control."""
    row = message if isinstance(message, Mapping) else message._asdict()
    excerpt = body_excerpt(str(row.get("body") or ""), 300)
    return Variation(int(row["action_id"]), CURRENT, str(row["channel"]),
                     redact_contacts(str(row.get("subject") or "")),
                     redact_contacts(str(row.get("preheader_text") or "")), _sentences(excerpt)[:4],
                     "current copy")


_LABEL = re.compile(r"^\s*(?:\*\*)?(subject(?: line)?|title|headline|preheader(?: text)?|preview(?: text)?)"
                    r"(?:\*\*)?\s*:\s*(?:\*\*)?\s*(.+?)\s*(?:\*\*)?$", re.I)


def parse_variation(text: str, channel: str) -> tuple[str, str, list[str]]:
    """(subject, preheader, body outline) from one generated text.

    Labelled lines ("Subject:", "Preheader:") win; otherwise the first line is the subject (the title
    for push; SMS has none) and the first sentence of the rest is the preheader.
    """
    cleaned = re.sub(r"^\s*\d+[.)]\s+", "", (text or "").strip())
    lines = [line.strip() for line in cleaned.splitlines() if line.strip()]
    subject = preheader = ""
    rest: list[str] = []
    for line in lines:
        match = _LABEL.match(line)
        if match and match.group(1).lower().startswith(("subject", "title", "headline")) and not subject:
            subject = match.group(2)
        elif match and not preheader:
            preheader = match.group(2)
        else:
            rest.append(line)
    if channel == "twilio":
        # SMS has no subject: every line is body copy.
        return "", "", [s for line in ([subject] if subject else []) + rest for s in _sentences(_plain(line))]
    if not subject and rest:
        subject = rest.pop(0)
    sentences = [s for line in rest for s in _sentences(_plain(line))]
    if not preheader and channel == "email" and sentences:
        preheader = sentences[0]
        # Inboxes show about 100 characters of preheader; a longer first sentence stays in the body.
        if len(preheader) <= _PREHEADER_CHARS:
            sentences.pop(0)
        else:
            preheader = preheader[:_PREHEADER_CHARS - 1].rsplit(" ", 1)[0] + "…"
    outline = sentences or ([preheader] if preheader else [])
    return _plain(subject), _plain(preheader), outline


def _plain(text: str) -> str:
    text = re.sub(r"\*\*|__|^#+\s*", "", text or "")
    return re.sub(r"\s+", " ", text).strip()


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\s+[-•]\s+", text.strip())
    return [p.strip(" -•") for p in parts if p.strip(" -•")]


_APP_PREFERENCE = {
    "email": ("email-copy", "email", "newsletter"),
    "push": ("push", "notification", "email-copy", "copy"),
    "twilio": ("sms", "social-post", "social", "copy"),
}


def choose_generation_app(apps: Sequence[Mapping[str, Any]], channel: str) -> dict[str, Any]:
    """The generation app that best fits `channel` (by id, name or category), else the first app."""
    if not apps:
        raise CioMaveraError("Mavera lists no generation apps; check the workspace's Generate access")
    wanted = _APP_PREFERENCE.get(channel, ("email-copy", "email"))
    for hint in wanted:
        for app in apps:
            label = " ".join(str(app.get(k) or "") for k in ("id", "name", "category")).lower()
            # Subject-line apps return lines only; a body outline needs a copy app.
            if hint in label and "subject" not in label:
                return dict(app)
    return dict(apps[0])


def generation_inputs(message: Mapping[str, Any], strategy: Strategy, app: Mapping[str, Any],
                      n: int) -> dict[str, Any]:
    """Inputs for the app: topic, audience, tone and key points shaped by the strategy and the shortfall."""
    shortfalls = ", ".join(campaign_stats.rate_definition(m).label.lower() for m in message["metrics"])
    topic = " - ".join(s for s in (redact_contacts(str(message.get("name") or "")),
                                   redact_contacts(str(message.get("subject") or "")),
                                   body_excerpt(str(message.get("body") or ""), 160)) if s)
    points = [f"Fix the low {shortfalls}", *strategy.key_points]
    inputs: dict[str, Any] = {
        "topic": topic or f"{message['channel']} message {message['action_id']}",
        "target_audience": "existing customers of the product who receive this message",
        "tone": "clear, specific, no hype",
        "key_points": points[:4],
        "variations": n,
        "channel": message["channel"],
    }
    fields = app.get("input_fields") or app.get("input_schema") or app.get("input_data")
    names = _field_names(fields)
    if names:
        inputs = {k: v for k, v in inputs.items() if k in names}
        if "topic" not in inputs and names:
            inputs[sorted(names)[0]] = topic
    assert_no_pii(inputs, what="the generation request")
    return inputs


def _field_names(fields: Any) -> set[str]:
    if isinstance(fields, Mapping):
        props = fields.get("properties")
        return set(props) if isinstance(props, Mapping) else set(fields)
    if isinstance(fields, list):
        return {str(f.get("name")) if isinstance(f, Mapping) else str(f) for f in fields}
    return set()


def generate_variations(client: Any, underperformer: Mapping[str, Any] | Any, strategy: Strategy,
                        n: int = 3, *, apps: Sequence[Mapping[str, Any]] | None = None,
                        skipped: list[SkippedStep] | None = None) -> list[Variation]:
    """`n` new variations of one underperforming message from a Generate app, shaped by the strategy."""
    message = underperformer if isinstance(underperformer, Mapping) else underperformer._asdict()
    if n < 1:
        return []
    app = choose_generation_app(apps if apps is not None else cached_listing(client, "generation_apps"),
                                str(message["channel"]))
    inputs = generation_inputs(message, strategy, app, n)
    what = f"{n} variations of message {message['action_id']}"
    try:
        result = client.generate(str(app["id"]), inputs, n=n)
    except _skippable() as exc:
        _skip(skipped, "generate", what, exc)
        return []
    texts = _split_variations(result.variations, n)
    out = []
    for i, text in enumerate(texts[:n]):
        subject, preheader, outline = parse_variation(text, str(message["channel"]))
        out.append(Variation(int(message["action_id"]), chr(ord("A") + i) if i < 26 else f"V{i + 1}",
                             str(message["channel"]), subject, preheader, outline, str(app["id"])))
    return out


def draft_variations(client: Any, findings: Findings, strategy: Strategy, n: int = 3, *,
                     skipped: list[SkippedStep] | None = None) -> list[Variation]:
    """For each underperforming message: `n` generated variations and its current copy as the control
    (neither when the generation was skipped)."""
    if findings.messages.empty:
        return []
    apps = cached_listing(client, "generation_apps") if n > 0 else []
    drafts: list[Variation] = []
    for message in findings.messages.to_dict("records"):
        new = generate_variations(client, message, strategy, n, apps=apps, skipped=skipped)
        # The live copy is only worth scoring as the control of new copy.
        drafts += [current_copy(message), *new] if new else []
    return drafts


def _split_variations(texts: Sequence[str], n: int) -> list[str]:
    """One text per variation; a single text with a numbered list is split at its items."""
    if len(texts) != 1 or n == 1:
        return list(texts)
    parts = re.split(r"\n\s*\n(?=\s*\d+[.)]\s)", texts[0].strip())
    return parts if len(parts) > 1 else list(texts)


# --- personas and scoring ----------------------------------------------------------------------


# Personas who read marketing messages as customers or judge them as experts.
_AUDIENCE_HINT = re.compile(r"email|lifecycle|marketing|customer|subscriber|business|owner", re.I)
_WORD = re.compile(r"[a-z]{4,}")
_STOP = frozenset({"your", "with", "this", "that", "from", "have", "what", "about", "more", "than",
                   "into", "just", "their", "there", "they", "them", "will", "when", "then", "each"})


def choose_personas(personas: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                    wanted: Sequence[str] = (), k: int = 3) -> list[dict[str, Any]]:
    """The personas to score with: those named or id'd in `wanted`, else `k` suitable base personas.

    Suitability: words shared between the persona and the underperformers' copy, plus a bonus for
    personas who read marketing messages as customers or experts; ties broken by name, one
    persona per category first so the panel disagrees usefully.
    """
    if wanted:
        chosen = []
        for item in wanted:
            match = next((p for p in personas if p.get("id") == item), None) or next(
                (p for p in personas if str(p.get("name", "")).casefold() == str(item).casefold()), None)
            if match is None:
                raise InvalidParameter(f"persona {item!r} not found; list them with "
                                       "MaveraClient.list_personas()")
            chosen.append(dict(match))
        return chosen
    pool = [p for p in personas if not p.get("is_custom")] or list(personas)
    copy_words = set()
    for message in summary.get("underperformers", []):
        text = " ".join(str(message.get(k) or "") for k in ("message_name", "subject", "preheader",
                                                             "body_excerpt"))
        copy_words |= {w for w in _WORD.findall(text.lower()) if w not in _STOP}

    def relevance(p: Mapping[str, Any]) -> float:
        text = f"{p.get('name', '')} {p.get('description', '')}".lower()
        return len(copy_words & set(_WORD.findall(text))) + 2.0 * bool(_AUDIENCE_HINT.search(text))

    ranked = sorted(pool, key=lambda p: (-relevance(p), str(p.get("name", ""))))
    chosen, categories = [], set()
    for p in ranked:
        if len(chosen) < k and p.get("category") not in categories:
            chosen.append(dict(p))
            categories.add(p.get("category"))
    for p in ranked:
        if len(chosen) < k and dict(p) not in chosen:
            chosen.append(dict(p))
    return chosen


SCORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10,
                  "description": "How well this message works for you, 1 (not at all) to 10"},
        "would_open": {"type": "number", "minimum": 0, "maximum": 1,
                       "description": "Probability you would open it"},
        "would_click": {"type": "number", "minimum": 0, "maximum": 1,
                        "description": "Probability you would click through"},
        "reason": {"type": "string", "maxLength": 300,
                   "description": "One or two sentences on why"},
    },
    "required": ["score", "would_open", "would_click", "reason"],
    "additionalProperties": False,
}

_SCORE_INSTRUCTIONS = ("Judge the message below as yourself, as if it arrived from a product you use. "
                       "Answer only with the JSON object the schema asks for.")
_SCORE_COLUMNS = ["action_id", "variation_id", "channel", "persona_id", "persona_name", "score",
                  "would_open", "would_click", "reason", "method"]


def score_prompt(variation: Variation) -> str:
    """What a persona is shown for one variation."""
    kind = {"twilio": "SMS", "push": "push notification"}.get(variation.channel, variation.channel)
    return f"A {kind} you just received:\n\n{variation.as_text()}"


def score_variations(client: Any, variations: Sequence[Variation],
                     personas: Sequence[Mapping[str, Any]],
                     mode: ValidationMode = "responses", *, timeout_s: float = 120.0,
                     poll_s: float = 2.0, skipped: list[SkippedStep] | None = None) -> pd.DataFrame:
    """One row per (variation, persona): score 1-10, open/click probability and a reason.

    `responses`: one structured Responses call per pair (JSON schema). `focus_group`: one focus
    group per message, asking each persona to rate every variation and say whether they would
    open and click (yes/no, so the probabilities are 0 or 1 per persona).
    """
    if len(personas) < 3:
        raise JobInputError(f"scoring needs at least three personas, got {len(personas)}")
    if mode not in ("responses", "focus_group"):
        raise JobInputError(f"validation must be 'responses' or 'focus_group', not {mode!r}")
    rows: list[dict[str, Any]] = []
    if mode == "responses":
        for variation in variations:
            rows.extend(_score_with_panel(client, variation, personas, skipped))
    else:
        by_message: dict[int, list[Variation]] = {}
        for variation in variations:
            by_message.setdefault(variation.action_id, []).append(variation)
        for action_id, group in by_message.items():
            rows.extend(_score_with_focus_group(client, action_id, group, personas, timeout_s, poll_s,
                                                skipped))
    return pd.DataFrame(rows, columns=_SCORE_COLUMNS)


def _score_with_panel(client: Any, variation: Variation, personas: Sequence[Mapping[str, Any]],
                      skipped: list[SkippedStep] | None) -> list[dict[str, Any]]:
    """Every persona's structured answer for one variation, or none if any call was refused, so
    every ranked variation is judged by the same panel."""
    prompt = score_prompt(variation)
    assert_no_pii(prompt, what="the scoring request")
    rows, refused = [], []
    for persona in personas:
        try:
            answer = client.respond(prompt, persona_id=str(persona["id"]), schema=SCORE_SCHEMA,
                                    schema_name="message_score", instructions=_SCORE_INSTRUCTIONS)
        except _skippable() as exc:
            refused.append(exc)
            continue
        parsed = answer.parsed or {}
        rows.append(_score_row(variation, persona, parsed.get("score"), parsed.get("would_open"),
                               parsed.get("would_click"), parsed.get("reason"), "responses"))
    if not refused:
        return rows
    label = "current copy" if variation.variation_id == CURRENT else f"variation {variation.variation_id}"
    note = (f"; its {len(rows)} other score(s) were dropped so all variations face the same panel"
            if rows else "")
    _skip(skipped, "score", f"message {variation.action_id} {label}",
          f"{len(refused)} of {len(personas)} persona calls refused ({skip_reason(refused[0])}){note}")
    return []


def _score_row(variation: Variation, persona: Mapping[str, Any], score: Any, would_open: Any,
               would_click: Any, reason: Any, method: str) -> dict[str, Any]:
    return {"action_id": variation.action_id, "variation_id": variation.variation_id,
            "channel": variation.channel, "persona_id": str(persona.get("id")),
            "persona_name": str(persona.get("name", "")),
            "score": _clip(score, 1, 10), "would_open": _clip(would_open, 0, 1),
            "would_click": _clip(would_click, 0, 1), "reason": str(reason or "").strip(),
            "method": method}


def _clip(value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return float(min(high, max(low, number))) if math.isfinite(number) else float("nan")


def _score_with_focus_group(client: Any, action_id: int, variations: Sequence[Variation],
                            personas: Sequence[Mapping[str, Any]], timeout_s: float, poll_s: float,
                            skipped: list[SkippedStep] | None) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = []
    for v in variations:
        copy = score_prompt(v)
        questions += [
            {"id": f"{v.variation_id}:score", "type": "rating", "scale": {"min": 1, "max": 10},
             "text": f"Rate this message from 1 to 10 for how well it works for you.\n\n{copy}"},
            {"id": f"{v.variation_id}:open", "type": "yes_no", "text": f"Would you open this?\n\n{copy}"},
            {"id": f"{v.variation_id}:click", "type": "yes_no",
             "text": f"Would you click through?\n\n{copy}"},
        ]
    assert_no_pii(questions, what="the focus-group questions")
    try:
        result = client.focus_group([str(p["id"]) for p in personas], questions,
                                    name=f"cio-mavera message {action_id} variations",
                                    timeout_s=timeout_s, poll_s=poll_s)
    except _skippable() as exc:
        _skip(skipped, "score", f"focus group for message {action_id}", exc)
        return []
    by_text = {q["text"]: q["id"] for q in questions}
    ids_in_order = [q["id"] for q in questions]
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    for i, question in enumerate(result.questions):
        qid = question.get("question_id") or question.get("id")
        if qid not in ids_in_order:
            qid = by_text.get(question.get("question") or question.get("text"),
                              ids_in_order[i] if i < len(ids_in_order) else None)
        for response in question.get("responses") or []:
            answers[(str(qid), str(response.get("persona_id")))] = response
    names = {str(p["id"]): p for p in personas}
    rows = []
    for v in variations:
        for pid, persona in names.items():
            score = answers.get((f"{v.variation_id}:score", pid))
            if score is None:
                continue
            opened = answers.get((f"{v.variation_id}:open", pid), {})
            clicked = answers.get((f"{v.variation_id}:click", pid), {})
            rows.append(_score_row(v, persona, score.get("score"), _yes(opened), _yes(clicked),
                                   score.get("reasoning") or score.get("answer"), "focus_group"))
    return rows


def _yes(response: Mapping[str, Any]) -> float:
    answer = str(response.get("answer", "")).strip().lower()
    if answer in ("yes", "true", "1"):
        return 1.0
    if answer in ("no", "false", "0"):
        return 0.0
    return float("nan")


def rank_variations(scores: pd.DataFrame, variations: Sequence[Variation] = ()) -> pd.DataFrame:
    """One row per new variation, ranked within its message by mean persona score, then click probability.

    `lift_vs_current` is the variation's mean score minus the live copy's (NaN if it was not scored).
    """
    columns = ["action_id", "rank", "variation_id", "subject", "preheader", "body_outline",
               "mean_score", "min_score", "max_score", "would_open", "would_click", "personas",
               "current_score", "lift_vs_current", "best_reason", "worst_reason"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    stats = (scores.groupby(["action_id", "variation_id"], sort=False)
             .agg(mean_score=("score", "mean"), min_score=("score", "min"), max_score=("score", "max"),
                  would_open=("would_open", "mean"), would_click=("would_click", "mean"),
                  personas=("persona_id", "nunique"))
             .reset_index())
    reasons = scores.sort_values(["score", "persona_name"], kind="stable")
    worst = reasons.groupby(["action_id", "variation_id"]).first()["reason"].rename("worst_reason")
    best = reasons.groupby(["action_id", "variation_id"]).last()["reason"].rename("best_reason")
    stats = stats.join(best, on=["action_id", "variation_id"]).join(worst, on=["action_id", "variation_id"])
    current = stats[stats["variation_id"] == CURRENT].set_index("action_id")["mean_score"]
    ranked = stats[stats["variation_id"] != CURRENT].copy()
    ranked["current_score"] = ranked["action_id"].map(current).astype(float)
    ranked["lift_vs_current"] = ranked["mean_score"] - ranked["current_score"]
    # Messages keep the order they were scored in (strongest evidence first).
    order = {a: i for i, a in enumerate(dict.fromkeys(scores["action_id"]))}
    ranked["_message"] = ranked["action_id"].map(order)
    ranked = ranked.sort_values(["_message", "mean_score", "would_click", "variation_id"],
                                ascending=[True, False, False, True], kind="stable")
    ranked["rank"] = ranked.groupby("action_id").cumcount() + 1
    copy = {(v.action_id, v.variation_id): v for v in variations}
    ranked["subject"] = [getattr(copy.get(k), "subject", "") for k in zip(ranked["action_id"], ranked["variation_id"], strict=True)]
    ranked["preheader"] = [getattr(copy.get(k), "preheader", "") for k in zip(ranked["action_id"], ranked["variation_id"], strict=True)]
    ranked["body_outline"] = [list(getattr(copy.get(k), "body_outline", [])) for k in zip(ranked["action_id"], ranked["variation_id"], strict=True)]
    for column in ("mean_score", "would_open", "would_click", "current_score", "lift_vs_current"):
        ranked[column] = ranked[column].astype(float).round(2)
    return ranked[columns].reset_index(drop=True)


# --- cached listings (persona list, generation apps) --------------------------------------------


def cached_listing(client: Any, name: Literal["personas", "generation_apps"],
                   max_age: dt.timedelta = _LISTING_MAX_AGE) -> list[dict[str, Any]]:
    """`client.list_personas()` or `client.generation_apps()`, kept for a day beside the response cache.

    The client caches only billed calls; these free listings are cached here so a warm re-run
    sends no request at all. `client.refresh` forces a new listing.
    """
    fetch: Callable[[], list[dict[str, Any]]] = {
        "personas": lambda: client.list_personas(),
        "generation_apps": lambda: client.generation_apps(),
    }[name]
    root = getattr(getattr(client, "connection", None), "cache_dir", None)
    if root is None:
        return list(fetch())
    path = Path(root) / "mavera-listings" / f"{name}.json"
    if path.is_file() and not getattr(client, "refresh", False):
        try:
            stored = json.loads(path.read_text())
            age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(stored["fetched_at"])
            if age <= max_age and isinstance(stored.get("items"), list):
                return stored["items"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable or foreign: fetch again
    items = list(fetch())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"fetched_at": dt.datetime.now(dt.UTC).isoformat(), "items": items}))
    tmp.replace(path)
    return items


# --- results.json ------------------------------------------------------------------------------


def campaign_results(data: CampaignData, findings: Findings, strategy: Strategy,
                     ranked: pd.DataFrame, scores: pd.DataFrame, *,
                     personas: Sequence[Mapping[str, Any]] = (), budget: Any = None,
                     credits_spent: int | None = None, skipped: Sequence[SkippedStep] = (),
                     parameters: Mapping[str, Any] | None = None,
                     validation: str = "responses") -> dict[str, Any]:
    """The run's machine-readable findings (DESIGN.md "Run outputs") for results.json."""
    flagged = [{
        "campaign_id": int(r.campaign_id), "action_id": int(r.action_id), "channel": r.channel,
        "name": r.name, "metric": r.metric, "rate": _round(r.rate, 6), "ci_low": _round(r.ci_low, 6),
        "ci_high": _round(r.ci_high, 6), "baseline": _round(r.baseline, 6),
        "relative_difference": _round(r.relative_difference, 4), "p_value": _float(r.p_value),
        "p_adjusted": _float(r.p_adjusted), "trials": int(r.trials), "test": r.test,
    } for r in findings.flagged.itertuples(index=False)]
    persona_rows: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in scores.itertuples(index=False):
        persona_rows.setdefault((int(r.action_id), str(r.variation_id)), []).append({
            "persona_id": r.persona_id, "persona_name": r.persona_name, "score": _float(r.score),
            "would_open": _float(r.would_open), "would_click": _float(r.would_click), "reason": r.reason})
    variations = [{
        "action_id": int(r.action_id), "rank": int(r.rank), "variation_id": r.variation_id,
        "subject": r.subject, "preheader": r.preheader, "body_outline": list(r.body_outline),
        "mean_score": _float(r.mean_score), "would_open": _float(r.would_open),
        "would_click": _float(r.would_click), "current_score": _float(r.current_score),
        "lift_vs_current": _float(r.lift_vs_current),
        "persona_scores": persona_rows.get((int(r.action_id), str(r.variation_id)), []),
    } for r in ranked.itertuples(index=False)]
    budget_summary = budget.summary() if budget is not None else None
    spent = credits_spent if credits_spent is not None else (budget.spent if budget is not None else 0)
    return {
        "job": JOB,
        "mode": data.mode,
        "workspace": data.workspace,
        "window": {"start": data.start.isoformat(), "end": data.end.isoformat(), "days": data.days},
        "channel": data.channel,
        "campaign_ids": list(data.campaign_ids),
        "data_freshness": dict(data.freshness),
        "method": {"alpha": findings.alpha, "min_trials": findings.min_trials,
                   "min_relative_drop": findings.min_relative_drop,
                   "test": "one-sided two-proportion z (Fisher exact for rare events) vs rest of channel",
                   "correction": "benjamini-hochberg"},
        "messages_tested": int(findings.tests.loc[findings.tests["reason"].isna(), "action_id"].nunique()),
        "flagged_underperformers": flagged,
        "messages_rewritten": [int(a) for a in findings.messages["action_id"]],
        "strategy": {"content": strategy.content, "key_points": strategy.key_points,
                     "thread_id": strategy.thread_id, "sources": strategy.sources,
                     "skipped": strategy.skipped},
        "validation": validation,
        "personas": [{"id": p.get("id"), "name": p.get("name"), "category": p.get("category")}
                     for p in personas],
        "ranked_variations": variations,
        "credits_spent": int(spent),
        "credits": budget_summary,
        "skipped": [asdict(s) for s in skipped],
        "parameters": dict(parameters or {}),
    }


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
