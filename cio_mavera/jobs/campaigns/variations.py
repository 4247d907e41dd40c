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
from cio_mavera.mavera.generated import first_option, plain, unquote
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


_LABEL = re.compile(r"^(subject(?: line)?|title|headline|preheader(?: text)?|preview(?: text)?|"
                    r"body(?: copy)?|cta|call to action|button)\s*[:\-\u2013\u2014]\s*(.*)$", re.I)
_RULE = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,}|={3,})\s*$")
_SALUTATION = re.compile(r"^(?:hi|hey|hello|dear|greetings)\b(?:\{\{[^}]*\}\}|[^.!?{}]){0,60},$",
                         re.I)
_SIGN_OFF = re.compile(r"^(?:cheers|best|thanks|thank you|warmly|regards|best regards|"
                       r"kind regards|talk soon|see you soon|sincerely)[,!.]?$", re.I)


def _label(line: str) -> tuple[str, str]:
    """("subject" | "preheader" | "body" | "cta" | "", value) for a labelled line of copy."""
    text = plain(line.replace("**", "").replace("__", ""))
    match = _LABEL.match(text)
    if not match:
        return "", text
    name = match.group(1).lower()
    kind = ("subject" if name.startswith(("subject", "title", "headline")) else
            "preheader" if name.startswith(("preheader", "preview")) else
            "body" if name.startswith("body") else "cta")
    return kind, unquote(match.group(2))


def parse_variation(text: str, channel: str) -> tuple[str, str, list[str]]:
    """(subject, preheader, body outline) from one generated text, however it is formatted.

    Only the first option counts when the text holds several; chatter, rules, greetings and the
    sign-off are dropped. Labelled lines ("Subject line:", "**Preview text:**") win; otherwise the
    first heading or line is the subject (the title for push; SMS has none) and the first sentence
    of the rest is the preheader.
    """
    subject = preheader = ""
    titles: list[str] = []
    rest: list[str] = []
    for raw in first_option(text).split("\n"):
        if not raw.strip() or _RULE.match(raw):
            continue
        kind, value = _label(raw)
        if _SIGN_OFF.match(value):
            break  # the signature and anything after it are not copy
        if not value or _SALUTATION.match(value):
            continue
        if kind == "subject" and not subject:
            subject = value
        elif kind == "preheader" and not preheader:
            preheader = value
        elif raw.lstrip().startswith("#") and not rest and kind == "":
            titles.append(value)
        else:
            rest.append(value)
    if channel == "twilio":
        # SMS has no subject: every line is body copy.
        lines = [subject, preheader] if subject or preheader else titles[:1]
        return "", "", [s for line in [*lines, *rest] if line for s in _sentences(line)]
    if not subject:
        subject = titles[0] if titles else (rest.pop(0) if rest else "")
    sentences = [s for line in rest for s in _sentences(line)]
    if not preheader and channel == "email" and sentences:
        preheader = sentences[0]
        # Inboxes show about 100 characters of preheader; a longer first sentence stays in the body.
        if len(preheader) <= _PREHEADER_CHARS:
            sentences.pop(0)
        else:
            preheader = preheader[:_PREHEADER_CHARS - 1].rsplit(" ", 1)[0] + "…"
    outline = sentences or ([preheader] if preheader else [])
    return subject, preheader, outline


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


# One creative direction per generation: the documented request has no variation count and one
# generation answers with one piece of copy, so N variations are N calls whose inputs differ.
ANGLES = (
    "lead with the one benefit that matters most to the reader",
    "lead with a concrete example or number",
    "say plainly what happens after the click",
    "sound like a note from a person, not a brand",
    "use proof from customers like the reader",
    "make it shorter and simpler than the current copy",
)


def angle(i: int) -> str:
    """The creative direction of variation `i` (0-based); later rounds say which take they are."""
    base = ANGLES[i % len(ANGLES)]
    return base if i < len(ANGLES) else f"{base} (take {i // len(ANGLES) + 1})"


def generation_inputs(message: Mapping[str, Any], strategy: Strategy, app: Mapping[str, Any],
                      direction: str = "") -> dict[str, Any]:
    """Inputs for the app: topic, audience, tone and key points shaped by the strategy and the
    shortfall, with `direction` (one of ANGLES) where the app takes it: key points, else tone,
    else the topic. Only fields the app declares are sent."""
    shortfalls = ", ".join(campaign_stats.rate_definition(m).label.lower() for m in message["metrics"])
    topic = " - ".join(s for s in (redact_contacts(str(message.get("name") or "")),
                                   redact_contacts(str(message.get("subject") or "")),
                                   body_excerpt(str(message.get("body") or ""), 160)) if s)
    topic = topic or f"{message['channel']} message {message['action_id']}"
    names = _field_names(app.get("input_fields") or app.get("input_schema") or app.get("input_data"))
    points = [f"Fix the low {shortfalls}", *([f"Angle: {direction}"] if direction else []),
              *strategy.key_points]
    tone = "clear, specific, no hype"
    if direction and names and "key_points" not in names:
        if "tone" in names:
            tone = f"{tone}; {direction}"
        else:
            topic = f"{topic} ({direction})"
    inputs: dict[str, Any] = {
        "topic": topic,
        "target_audience": "existing customers of the product who receive this message",
        "tone": tone,
        "key_points": points[:4],
    }
    if names:
        inputs = {k: v for k, v in inputs.items() if k in names}
        if "topic" not in inputs:
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
    """`n` new variations of one underperforming message, one Generate call each (see ANGLES).

    Each call is budgeted, booked and cached on its own, so a re-run spends nothing. A refused
    call ends the message's variations there: the ones already made are kept, the rest skipped.
    """
    message = underperformer if isinstance(underperformer, Mapping) else underperformer._asdict()
    if n < 1:
        return []
    if apps is None:
        apps = run.mavera.generations.apps(max_age=LISTING_MAX_AGE)
    app = choose_generation_app(apps, str(message["channel"]))
    channel, action_id = str(message["channel"]), int(message["action_id"])
    out: list[Variation] = []
    for i in range(n):
        inputs = generation_inputs(message, strategy, app, angle(i))
        try:
            result = run.mavera.generations.create(str(app["id"]), inputs)
        except SKIPPABLE as exc:
            run.skip("generate", f"{n - i} of {n} variations of message {action_id}", exc)
            break
        subject, preheader, outline = parse_variation(result.content, channel)
        out.append(Variation(action_id, chr(ord("A") + i) if i < 26 else f"V{i + 1}", channel,
                             subject, preheader, outline, str(app["id"])))
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

