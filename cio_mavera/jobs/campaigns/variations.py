"""Job 1 Mavera step: new copy for each underperforming message from a Generate app."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cio_mavera.errors import CioMaveraError
from cio_mavera.jobs.campaigns import stats as campaign_stats
from cio_mavera.jobs.campaigns.analysis import Findings, body_excerpt, redact_contacts
from cio_mavera.jobs.campaigns.strategy import Strategy
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.credits import SKIPPABLE
from cio_mavera.mavera import LISTING_MAX_AGE
from cio_mavera.pii import assert_no_pii

CURRENT = "current"  # variation_id of the message's live copy, scored as the control
_PREHEADER_CHARS = 110


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


def generate_variations(run: RunContext, underperformer: Mapping[str, Any] | Any, strategy: Strategy,
                        n: int = 3, *, apps: Sequence[Mapping[str, Any]] | None = None,
                        ) -> list[Variation]:
    """`n` new variations of one underperforming message from a Generate app, shaped by the strategy."""
    message = underperformer if isinstance(underperformer, Mapping) else underperformer._asdict()
    if n < 1:
        return []
    if apps is None:
        apps = run.mavera.generations.apps(max_age=LISTING_MAX_AGE)
    app = choose_generation_app(apps, str(message["channel"]))
    inputs = generation_inputs(message, strategy, app, n)
    what = f"{n} variations of message {message['action_id']}"
    try:
        result = run.mavera.generations.create(str(app["id"]), inputs, n=n)
    except SKIPPABLE as exc:
        run.skip("generate", what, exc)
        return []
    texts = _split_variations(result.variations, n)
    out = []
    for i, text in enumerate(texts[:n]):
        subject, preheader, outline = parse_variation(text, str(message["channel"]))
        out.append(Variation(int(message["action_id"]), chr(ord("A") + i) if i < 26 else f"V{i + 1}",
                             str(message["channel"]), subject, preheader, outline, str(app["id"])))
    return out


def draft_variations(run: RunContext, findings: Findings, strategy: Strategy, n: int = 3
                     ) -> list[Variation]:
    """For each underperforming message: `n` generated variations and its current copy as the control
    (neither when the generation was skipped)."""
    if findings.messages.empty:
        return []
    apps = run.mavera.generations.apps(max_age=LISTING_MAX_AGE) if n > 0 else []
    drafts: list[Variation] = []
    for message in findings.messages.to_dict("records"):
        new = generate_variations(run, message, strategy, n, apps=apps)
        # The live copy is only worth scoring as the control of new copy.
        drafts += [current_copy(message), *new] if new else []
    return drafts


def _split_variations(texts: Sequence[str], n: int) -> list[str]:
    """One text per variation; a single text with a numbered list is split at its items."""
    if len(texts) != 1 or n == 1:
        return list(texts)
    parts = re.split(r"\n\s*\n(?=\s*\d+[.)]\s)", texts[0].strip())
    return parts if len(parts) > 1 else list(texts)


