"""How a persona judges a text: message features, affinity, scores and the reason behind a score."""

from __future__ import annotations

import math
import re

from .base_personas import TRAITS, Persona
from .text import SANDBOX_MARK, digest, unmark

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
