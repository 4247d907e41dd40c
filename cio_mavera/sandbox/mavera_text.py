"""Deterministic text, scores and schema-shaped JSON for the Mavera sandbox.

Everything here is a pure function of its arguments: a `random.Random` seeded from the sha256 of
a canonical JSON of the inputs, so the same request and persona always give the same bytes.
Generated prose starts with `SANDBOX_MARK` so nobody mistakes it for real research.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from typing import Any

from .mavera_personas import TRAITS, Persona

SANDBOX_MARK = "[sandbox] "

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_STOPWORDS = frozenset(re.findall(r"\S+",
    "the and for with that this from your you our are was were have has had not but what which "
    "when where who why how can could would should will into about over than then them they their "
    "there these those been being very just also more most some such only other each any all its "
    "it's out off per via use using make made write give tell please based given like one two "
    "three four five sandbox persona message messages"))


def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) used to seed every generator."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(*parts: Any) -> str:
    """Hex sha256 of the canonical JSON of `parts`."""
    return hashlib.sha256(canonical(list(parts)).encode()).hexdigest()


def rng_for(*parts: Any) -> random.Random:
    """A random generator seeded by `parts` (same parts, same sequence)."""
    return random.Random(int(digest(*parts)[:16], 16))


def count_tokens(text: str) -> int:
    """Rough token count (4 characters a token), at least 1."""
    return max(1, math.ceil(len(text) / 4))


def unmark(text: str) -> str:
    """`text` without the sandbox marker, so scoring ignores it."""
    return text.replace(SANDBOX_MARK.strip(), "").strip()


def keywords(text: str, limit: int = 4) -> list[str]:
    """The most frequent non-stopwords of `text`, ties broken by first appearance."""
    counts: dict[str, int] = {}
    for word in _WORD.findall(unmark(text).lower()):
        if word not in _STOPWORDS:
            counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts, key=lambda w: -counts[w])
    return ranked[:limit]


def snippet(text: str, length: int = 80) -> str:
    """The first `length` characters of `text` on one line, with an ellipsis when cut."""
    flat = " ".join(unmark(text).split())
    return flat if len(flat) <= length else flat[: length - 1].rstrip() + "…"


# ---------------------------------------------------------------- scoring

_FEATURE_WORDS: dict[str, tuple[str, ...]] = {
    "price": ("save", "discount", "% off", "free", "deal", "price", "offer", "coupon", "cheap", "$"),
    "urgency": ("now", "today", "last chance", "hurry", "ends", "limited", "only", "don't miss",
                "final", "tonight"),
    "social_proof": ("customers", "teams", "people", "join", "trusted", "rated", "reviews",
                     "community", "thousands", "members"),
    "tech": ("api", "integrat", "automat", "workflow", "security", "data", "dashboard", "sync",
             "platform"),
    "trust": ("guarantee", "secure", "privacy", "no commitment", "cancel anytime", "support",
              "transparent", "honest", "proven"),
    "personal": ("you", "your", "we picked", "for you", "just for"),
}


def message_features(text: str) -> dict[str, float]:
    """Features of a message in 0..1, one per persona trait."""
    plain = unmark(text)
    lowered = plain.lower()
    words = max(1, len(plain.split()))

    def hits(trait: str) -> float:
        return min(1.0, sum(lowered.count(w) for w in _FEATURE_WORDS[trait]) / 2)

    return {
        "price": hits("price"),
        "urgency": hits("urgency"),
        "brevity": max(0.0, min(1.0, (14 - words) / 10)),
        "data": min(1.0, len(re.findall(r"\d+", plain)) / 2),
        "social_proof": hits("social_proof"),
        "curiosity": 1.0 if "?" in plain else (0.5 if "…" in plain or "..." in plain else 0.0),
        "hype": min(1.0, plain.count("!") / 2 + (0.5 if re.search(r"\b[A-Z]{4,}\b", plain) else 0)),
        "personal": hits("personal"),
        "tech": hits("tech"),
        "trust": hits("trust"),
    }


def affinity(text: str, persona: Persona | None, context: str = "") -> float:
    """How much `persona` likes `text`, in 0..1 (0.5 neutral); deterministic, varies with both."""
    features = message_features(text)
    traits = persona.traits if persona else {t: 0.0 for t in TRAITS}
    raw = sum(traits[t] * features[t] for t in TRAITS)
    if persona is not None:
        lowered = unmark(text).lower()
        raw += 0.4 * sum(1 for word in persona.interests if word in lowered)
    # A persona-and-text specific nudge so near-identical texts still get distinct scores and
    # personas with similar traits still disagree now and then.
    noise = int(digest("affinity", unmark(text), persona.id if persona else "", context)[:8], 16)
    raw += (noise / 0xFFFFFFFF - 0.5) * 1.6
    return 1 / (1 + math.exp(-raw))


def scale_score(value: float, low: float, high: float, integer: bool = True) -> float:
    """`value` in 0..1 mapped onto [low, high] (rounded to an int, or to 1 decimal)."""
    scaled = low + value * (high - low)
    if integer:
        return int(max(math.ceil(low), min(math.floor(high), round(scaled))))
    return max(low, min(high, round(scaled, 1)))


def strongest_feature(text: str, persona: Persona | None) -> tuple[str, float]:
    """The trait that moved `persona` most on `text`, with its signed contribution."""
    features = message_features(text)
    if persona is None:
        return "brevity", 0.0
    contributions = {t: persona.traits[t] * features[t] for t in TRAITS}
    trait = max(contributions, key=lambda t: (abs(contributions[t]), t))
    return trait, contributions[trait]


_LIKES = {
    "price": "the concrete saving makes it worth my attention",
    "urgency": "the deadline gives me a reason to act now",
    "brevity": "it is short enough to take in at a glance",
    "data": "the specific numbers make it credible",
    "social_proof": "knowing others already use it reassures me",
    "curiosity": "the question makes me want to open it",
    "hype": "the energy feels exciting",
    "personal": "it speaks to me directly",
    "tech": "it mentions the workflow and integration details I care about",
    "trust": "it signals reliability and low risk",
}
_DISLIKES = {
    "price": "leading with discounts makes it feel cheap",
    "urgency": "the pressure to act now feels pushy",
    "brevity": "it is too thin to tell me anything useful",
    "data": "the numbers feel like noise",
    "social_proof": "the crowd appeal does nothing for me",
    "curiosity": "the teaser hides what I actually get",
    "hype": "the hype reads like spam",
    "personal": "the forced familiarity is off-putting",
    "tech": "the jargon loses me",
    "trust": "the reassurances sound defensive",
}
_NEUTRAL = "nothing in it is specific to my situation"


def reason(text: str, persona: Persona | None, score_0_1: float) -> str:
    """A one-sentence reason for a score, naming the feature that drove it."""
    trait, contribution = strongest_feature(text, persona)
    if abs(contribution) < 0.15:
        why = _NEUTRAL
    elif contribution > 0:
        why = _LIKES[trait]
    else:
        why = _DISLIKES[trait]
    mood = "I like it" if score_0_1 >= 0.62 else ("It is fine" if score_0_1 >= 0.42 else "I would skip it")
    return f"{SANDBOX_MARK}{mood}: {why}."


# ---------------------------------------------------------------- prose

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


# ---------------------------------------------------------------- generations

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
)
_BODY_CLOSERS = (
    "Reply to this email if you have questions — a real person reads every one.",
    "It takes two minutes to get started.",
    "Cancel anytime, no commitment.",
    "Thousands of teams already rely on it.",
    "Offer ends today.",
)


def generation_variations(app_id: str, inputs: dict[str, Any], count: int,
                          persona: Persona | None) -> list[str]:
    """`count` distinct sandbox variations for a generation app and its inputs."""
    topic_text = str(inputs.get("topic") or inputs.get("product") or inputs.get("subject") or
                     inputs.get("message") or canonical(inputs))
    plain = " ".join(unmark(topic_text).split())
    topic = (plain.lower() if 0 < len(plain.split()) <= 6 else " ".join(keywords(topic_text, 3))) or "your account"
    rng = rng_for("generation", app_id, inputs, persona.id if persona else None)
    hooks = list(_SUBJECT_HOOKS)
    rng.shuffle(hooks)
    audience = inputs.get("target_audience") or inputs.get("audience") or (persona.name if persona else "")
    out: list[str] = []
    for i in range(count):
        hook = hooks[i % len(hooks)]
        line = hook.format(t=topic, T=topic[:1].upper() + topic[1:])
        if i >= len(hooks):
            line = f"{line} (take {i // len(hooks) + 1})"
        if app_id in ("email-subject-lines", "ad-headlines"):
            out.append(f"{SANDBOX_MARK}{line}")
            continue
        closer = rng.choice(_BODY_CLOSERS)
        aud = f" for {audience}" if audience else ""
        points = inputs.get("key_points")
        detail = ("; ".join(map(str, points)) if isinstance(points, list) else str(points)) if points else topic
        out.append(f"{SANDBOX_MARK}**{line}**\n\nA short note{aud} about {detail}. {closer}")
    return out


# ---------------------------------------------------------------- structured output

class SchemaError(ValueError):
    """The JSON schema uses a construct the sandbox cannot satisfy."""


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SchemaError(f"only local $ref is supported, got {ref!r}")
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
        if seen > 32:
            raise SchemaError("$ref cycle")
    return schema


def _sentence(rng: random.Random, name: str, text: str, persona: Persona | None) -> str:
    topics = keywords(text, 3)
    about = rng.choice(topics) if topics else "this"
    who = persona.name if persona else "the audience"
    return f"{SANDBOX_MARK}{name.replace('_', ' ')} for {who} regarding {about}."


def _string(schema: dict[str, Any], name: str, rng: random.Random, text: str,
            persona: Persona | None, score: float) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2024-01-01T00:00:00Z"
    if fmt == "date":
        return "2024-01-01"
    if fmt in ("uri", "url"):
        return "https://example.com/sandbox"
    if fmt == "email":
        return "sandbox@example.com"
    lowered = name.lower()
    if "sentiment" in lowered:
        value = "positive" if score >= 0.62 else ("mixed" if score >= 0.42 else "negative")
    elif lowered in ("reason", "reasoning", "explanation", "rationale", "why"):
        value = reason(text, persona, score)
    else:
        value = _sentence(rng, name or "answer", text, persona)
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if high is not None and len(value) > high:
        value = value[:high]
    if len(value) < low:
        value = value + "x" * (low - len(value))
    return value


def _number(schema: dict[str, Any], integer: bool, score: float) -> float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
        low = schema["exclusiveMinimum"] + (1 if integer else 0.01)
    if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
        high = schema["exclusiveMaximum"] - (1 if integer else 0.01)
    if low is None and high is None:
        low, high = (1, 10)
    elif low is None:
        low = min(0, high)
    elif high is None:
        high = max(low, 0) + 10
    if integer and math.ceil(low) > math.floor(high):
        raise SchemaError("integer range is empty")
    if integer:
        return int(scale_score(score, low, high, integer=True))
    return float(scale_score(score, low, high, integer=False))


_SENTIMENT_WORDS = {"positive": 0.85, "favorable": 0.85, "good": 0.85, "neutral": 0.5,
                    "mixed": 0.5, "negative": 0.15, "unfavorable": 0.15, "bad": 0.15}


def _enum(options: list[Any], name: str, score: float, path: str) -> Any:
    if not options:
        raise SchemaError(f"empty enum at {path or '/'}")
    known = [o for o in options if isinstance(o, str) and o.lower() in _SENTIMENT_WORDS]
    if "sentiment" in name.lower() and known:
        # Pick the sentiment closest to the score, so "score: 8" never comes with "negative".
        return min(known, key=lambda o: (abs(_SENTIMENT_WORDS[o.lower()] - score), o))
    return options[min(len(options) - 1, int(score * len(options)))]


def generate_from_schema(schema: dict[str, Any], text: str, persona: Persona | None) -> Any:
    """JSON that validates against `schema`, derived from `text` and `persona` (deterministic).

    One affinity of `persona` for `text` drives every number, enum and sentiment in the object (with
    a small per-field jitter), so the fields agree with each other.
    """
    score = affinity(text, persona, "schema")
    return _generate(schema, schema, text, persona, score, "", "")


def _generate(schema: dict[str, Any], root: dict[str, Any], text: str, persona: Persona | None,
              score: float, name: str, path: str) -> Any:
    schema = _resolve(schema, root)
    rng = rng_for("schema", text, persona.id if persona else None, path)
    leaf = max(0.0, min(1.0, score + (rng.random() - 0.5) * 0.12))
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return _enum(schema["enum"], name, leaf, path)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            branches = [b for b in schema[combinator] if _resolve(b, root).get("type") != "null"]
            branch = (branches or schema[combinator])[0]
            return _generate(branch, root, text, persona, score, name, path)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            for key, value in part.items():
                if key == "properties" and key in merged:
                    merged[key] = {**merged[key], **value}
                elif key == "required" and key in merged:
                    merged[key] = [*merged[key], *value]
                else:
                    merged[key] = value
        return _generate(merged, root, text, persona, score, name, path)
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if non_null else "null"
    if kind is None:
        kind = "object" if "properties" in schema else ("array" if "items" in schema else "string")
    if kind == "object":
        return {key: _generate(sub, root, text, persona, score, key, f"{path}/{key}")
                for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", max(low, 3))
        items = schema.get("items", {"type": "string"})
        out = []
        for i in range(max(low, min(high, 3))):
            # Each item is its own judgement: re-derive the affinity with the index as context.
            item_score = affinity(text, persona, f"schema{path}/{i}") if i else score
            out.append(_generate(items, root, text, persona, item_score, name, f"{path}/{i}"))
        return out
    if kind == "string":
        return _string(schema, name, rng, text, persona, leaf)
    if kind == "integer":
        return _number(schema, True, leaf)
    if kind == "number":
        return _number(schema, False, leaf)
    if kind == "boolean":
        return leaf >= 0.5
    if kind == "null":
        return None
    raise SchemaError(f"unsupported schema type {kind!r} at {path or '/'}")
