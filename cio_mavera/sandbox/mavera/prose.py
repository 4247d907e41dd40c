"""Persona-voiced prose of the Mavera sandbox: chat replies, Mave research briefs, generation variations."""

from __future__ import annotations

from typing import Any

from .base_personas import Persona
from .scoring import affinity, reason, scale_score
from .text import SANDBOX_MARK, canonical, digest, keywords, rng_for, snippet, unmark

_OPENERS = ("My first reaction", "Honestly", "From where I sit", "Speaking for people like me",
            "Thinking about my week")
_SUGGESTIONS = ("Lead with the single benefit that matters most to me.",
                "Cut the wording in half and keep the concrete detail.",
                "Show me proof from someone like me.",
                "Tell me exactly what happens after I click.",
                "Make the value obvious without a countdown.",
                "Be specific about price and commitment up front.")


def chat_reply(prompt: str, persona: Persona | None, salt: Any = None) -> str:
    """A persona-voiced sandbox answer to `prompt`."""
    rng = rng_for("chat", prompt, persona.id if persona else None, salt)
    subject = snippet(prompt, 90) or "this"
    who = persona.name if persona else "a general audience"
    score = affinity(prompt, persona, "chat")
    topics = ", ".join(keywords(prompt, 3)) or "the request"
    return (f"{SANDBOX_MARK}{rng.choice(_OPENERS)} as {who}: on \"{subject}\", "
            f"{reason(prompt, persona, score)[len(SANDBOX_MARK):]} "
            f"My score is {scale_score(score, 1, 10)}/10. "
            f"What I would focus on: {topics}. {rng.choice(_SUGGESTIONS)}")


_FINDING_TEMPLATES = (
    "Audiences respond to {k} when the benefit is stated in the first line.",
    "Messages that pair {k} with a concrete example outperform generic claims.",
    "Fatigue around {k} shows up after repeated sends to the same segment.",
    "Segments with recent activity engage more with {k} than dormant ones.",
    "Clear expectations about {k} reduce unsubscribes and complaints.",
    "Peers in the category emphasise {k} with social proof rather than discounts.",
)
_RECOMMENDATION_TEMPLATES = (
    "Test a variant that leads with {k} against the current control.",
    "Shorten the copy around {k} and move the call to action above the fold.",
    "Suppress recently unengaged recipients before the next {k} send.",
    "Add one customer proof point about {k}.",
    "Space sends about {k} further apart for the affected audience.",
)


def mave_answer(message: str, turn: int, personas: list[Persona]) -> tuple[str, list[dict[str, Any]]]:
    """A sandbox research brief for `message` (turn `turn` of its thread) and its sources."""
    rng = rng_for("mave", message, turn)
    keys = keywords(message, 5) or ["engagement"]
    findings = [t.format(k=rng.choice(keys)) for t in rng.sample(_FINDING_TEMPLATES, 3)]
    recs = [t.format(k=rng.choice(keys)) for t in rng.sample(_RECOMMENDATION_TEMPLATES, 3)]
    voices = "; ".join(
        f"{p.name} — {reason(message, p, affinity(message, p, 'mave'))[len(SANDBOX_MARK):]}"
        for p in personas)
    content = "\n".join([
        f"{SANDBOX_MARK}Research brief: {snippet(message, 100)}",
        "",
        "**Key findings**",
        *(f"- {f}" for f in findings),
        "",
        "**Persona perspectives**",
        f"- {voices}" if voices else "- (none)",
        "",
        "**Recommendations**",
        *(f"{i}. {r}" for i, r in enumerate(recs, 1)),
        "",
        "_Synthetic sandbox output: no real research was performed._",
    ])
    source_types = ("web", "news", "seo", "knowledge_base")
    sources = []
    for i in range(3 + rng.randrange(3)):
        k = keys[i % len(keys)]
        slug = f"{k}-{digest('src', message, turn, i)[:6]}"
        sources.append({
            "title": f"[sandbox] Notes on {k} ({i + 1})",
            "url": f"https://example.com/sandbox/{slug}",
            "domain": "example.com",
            "snippet": f"{SANDBOX_MARK}Placeholder source about {k}; not a real document.",
            "source_type": source_types[i % len(source_types)],
        })
    return content, sources


_SUBJECT_HOOKS = (
    "{T}: what changed this week",
    "Your {t} checklist is ready",
    "Still thinking about {t}?",
    "Last chance: {t} ends tonight",
    "Save 20% on {t} today",
    "3 ways teams use {t}",
    "Join 10,000 customers using {t}",
    "{T}, made simple",
    "We picked these {t} ideas for you",
    "Is {t} worth it? An honest look",
    "Quick question about {t}",
    "The {t} guide we wish we had",
)
_BODY_CLOSERS = (
    "Reply to this email if you have questions — a real person reads every one.",
    "It takes two minutes to get started.",
    "Cancel anytime, no commitment.",
    "Thousands of teams already rely on it.",
    "Offer ends today.",
)
_CTAS = ("Get started", "See what's new", "Finish setting up", "Take a look", "Claim your spot")
_PREAMBLES = ("Here's a fresh version of your email:", "Sure! Here is one option:",
              "Below is a draft you can use:", "Absolutely — here's a take on it:")
_OUTROS = ("Let me know if you'd like a different tone!", "Hope this helps.",
           "Want me to shorten it further?")


def generation_output(app_id: str, inputs: dict[str, Any], persona: Persona | None) -> str:
    """One generated text for a generation app and its inputs, as messy as a real model's.

    Generate answers with one `output` (mavera-api.md §8.2), so one request gives one piece of
    copy. Its layout varies with the request, the way a model's does: a chatty preamble,
    markdown headings, bold labels, quoted subject lines, an "Option 1:" heading, a horizontal
    rule, a sign-off, an outro. The subject line carries SANDBOX_MARK so the copy stays visibly
    sandbox output after a client has stripped the chatter around it.
    """
    topic_text = str(inputs.get("topic") or inputs.get("product") or inputs.get("subject") or
                     inputs.get("message") or canonical(inputs))
    plain = " ".join(unmark(topic_text).split())
    topic = (plain.lower() if 0 < len(plain.split()) <= 6 else " ".join(keywords(topic_text, 3))) or "your account"
    rng = rng_for("generation", app_id, inputs, persona.id if persona else None)
    line = rng.choice(_SUBJECT_HOOKS).format(t=topic, T=topic[:1].upper() + topic[1:])
    subject = f"{SANDBOX_MARK}{line}"
    if app_id in ("email-subject-lines", "ad-headlines"):
        return rng.choice((f'"{subject}"', f"**{subject}**", f"Subject line: {subject}",
                           f"{rng.choice(_PREAMBLES)}\n\n1. {subject}"))
    audience = inputs.get("target_audience") or inputs.get("audience") or (persona.name if persona else "")
    points = inputs.get("key_points")
    detail = ("; ".join(map(str, points)) if isinstance(points, list) else str(points)) if points else topic
    aud = f" for {audience}" if audience else ""
    preheader = f"A short note{aud} about {topic}."
    detail = detail.strip().rstrip(".")
    body = [f"{detail[:1].upper()}{detail[1:]}.", rng.choice(_BODY_CLOSERS)]
    cta = rng.choice(_CTAS)
    layouts = (
        f"{rng.choice(_PREAMBLES)}\n\n**Subject line:** \u201c{subject}\u201d\n"
        f"**Preview text:** {preheader}\n\n---\n\nHi there,\n\n{body[0]}\n\n{body[1]}\n\n"
        f"**{cta} \u2192**\n\nCheers,\nThe team\n\n{rng.choice(_OUTROS)}",
        f"### Option 1: {cta}\n\nSubject: '{subject}'\nPreheader: {preheader}\n\nBody:\n"
        f"- {body[0]}\n- {body[1]}\n- CTA: {cta}",
        f"# {subject}\n\n_{preheader}_\n\n{body[0]} {body[1]}\n\n[{cta}](https://example.com/sandbox)",
        f"1. **Subject:** \"{subject}\"\n   **Preheader:** {preheader}\n\n{body[0]}\n\n{body[1]}",
    )
    return rng.choice(layouts)
