"""Base personas of the Mavera sandbox and the traits that make their answers differ.

Public fields follow mavera-api.md §5.1 (`id, object, name, category, description, is_custom,
is_expert, created_at`). `traits` are sandbox-only weights on message features (see
`scoring.message_features`): they decide how a persona scores a text, so personas disagree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Base personas are global and predate every workspace; one fixed unix timestamp (§5.1 example).
BASE_CREATED_AT = 1706140800

# Trait names are the message features of scoring.message_features.
TRAITS: tuple[str, ...] = ("price", "urgency", "brevity", "data", "social_proof", "curiosity",
                           "hype", "personal", "tech", "trust")


def persona_id(label: str) -> str:
    """A CUID-like id (25 chars, `clx` prefix) derived from `label`, stable across runs."""
    digest = hashlib.sha256(f"mavera-persona:{label}".encode()).hexdigest()
    return "clx" + digest[:22]


@dataclass(frozen=True)
class Persona:
    """A persona the sandbox can speak as."""

    id: str
    name: str
    category: str
    description: str
    traits: dict[str, float]
    is_custom: bool = False
    is_expert: bool = False
    created_at: int = BASE_CREATED_AT
    interests: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # custom-persona fields (details, type, ...)

    def summary(self) -> dict[str, Any]:
        """The list/get shape of §5.1 (the prompt is never exposed)."""
        return {"id": self.id, "object": "persona", "name": self.name, "category": self.category,
                "description": self.description, "is_custom": self.is_custom,
                "is_expert": self.is_expert, "created_at": self.created_at}


def _base(name: str, category: str, description: str, interests: tuple[str, ...],
          expert: bool = False, **traits: float) -> Persona:
    unknown = set(traits) - set(TRAITS)
    if unknown:
        raise ValueError(f"unknown persona traits {sorted(unknown)}")
    return Persona(id=persona_id(name), name=name, category=category, description=description,
                   traits={t: traits.get(t, 0.0) for t in TRAITS}, is_expert=expert,
                   interests=interests)


BASE_PERSONAS: tuple[Persona, ...] = (
    _base("Gen Z Consumer", "Generational",
          "Digital-native consumer aged 18-25 with strong social media influence.",
          ("social", "creator", "trend", "mobile"),
          brevity=1.2, curiosity=0.9, hype=0.4, social_proof=0.6, data=-0.5, trust=-0.2, price=0.5),
    _base("Millennial Parent", "Generational",
          "Time-poor parent aged 30-42 balancing work, family budget and convenience.",
          ("family", "convenience", "saving", "school"),
          price=1.0, personal=0.7, trust=0.6, urgency=-0.4, hype=-0.6, brevity=0.5),
    _base("Baby Boomer Retiree", "Generational",
          "Retired consumer aged 62-78 who values clarity, service and reliability.",
          ("health", "service", "travel", "reliability"),
          trust=1.1, data=0.3, hype=-1.0, urgency=-0.9, curiosity=-0.4, brevity=-0.3),
    _base("B2B Decision Maker", "Professional",
          "IT director at a mid-market company who signs off on software purchases.",
          ("roi", "security", "integration", "vendor"),
          data=1.1, tech=0.9, trust=0.7, hype=-1.1, urgency=-0.5, price=0.2),
    _base("SaaS CMO", "IndustrySpecific",
          "Chief Marketing Officer at a B2B SaaS company with $10M+ ARR.",
          ("pipeline", "brand", "growth", "attribution"),
          expert=True, data=0.9, social_proof=0.8, curiosity=0.5, personal=0.3, price=-0.4, hype=-0.3),
    _base("Small Business Owner", "Professional",
          "Owner of a 5-20 person business who wears every hat and watches cash flow.",
          ("cash", "time", "customers", "simple"),
          price=1.2, brevity=0.6, tech=-0.5, trust=0.5, urgency=0.2, data=0.2),
    _base("Procurement Manager", "Professional",
          "Procurement lead who compares vendors on total cost, risk and contract terms.",
          ("contract", "cost", "compliance", "risk"),
          price=0.9, data=0.8, trust=0.8, hype=-1.2, curiosity=-0.6, personal=-0.3),
    _base("Startup Founder", "Professional",
          "Founder of an early-stage startup chasing growth with a small team.",
          ("growth", "speed", "automation", "fundraising"),
          urgency=0.8, tech=0.8, curiosity=0.7, hype=0.3, trust=-0.3, price=0.4),
    _base("Budget-Conscious Shopper", "Lifestyle",
          "Value-seeking shopper who compares prices and waits for deals.",
          ("deal", "discount", "coupon", "value"),
          price=1.6, urgency=0.5, hype=0.1, tech=-0.4, trust=0.2, data=0.3),
    _base("Eco-Conscious Consumer", "Lifestyle",
          "Shopper who prefers sustainable brands and distrusts greenwashing.",
          ("sustainable", "planet", "ethical", "local"),
          trust=1.0, personal=0.4, hype=-0.8, urgency=-0.6, price=-0.3, curiosity=0.3),
    _base("Luxury Shopper", "Lifestyle",
          "Affluent consumer who buys premium brands for quality and status.",
          ("premium", "exclusive", "craft", "status"),
          price=-1.2, curiosity=0.6, personal=0.8, brevity=0.3, urgency=-0.2, social_proof=0.4),
    _base("Fitness Enthusiast", "Lifestyle",
          "Active consumer aged 25-45 who tracks workouts and follows fitness creators.",
          ("workout", "health", "progress", "community"),
          social_proof=0.9, hype=0.6, data=0.5, urgency=0.3, brevity=0.4, trust=-0.1),
    _base("E-commerce Marketing Manager", "IndustrySpecific",
          "Marketing manager at a DTC brand running email, SMS and paid social.",
          ("conversion", "retention", "email", "campaign"),
          data=0.8, personal=0.7, urgency=0.4, social_proof=0.5, tech=0.3, hype=-0.2),
    _base("Healthcare Administrator", "IndustrySpecific",
          "Hospital operations administrator focused on compliance and patient outcomes.",
          ("compliance", "patient", "privacy", "efficiency"),
          trust=1.3, data=0.7, hype=-1.0, urgency=-0.3, tech=0.2, brevity=-0.2),
    _base("Email Deliverability Expert", "Expert",
          "Lifecycle email specialist who judges messages on clarity, spam risk and relevance.",
          ("deliverability", "spam", "inbox", "engagement"),
          expert=True, hype=-1.4, urgency=-0.8, brevity=0.8, personal=0.6, price=-0.4, trust=0.5),
    _base("Behavioral Economist", "Expert",
          "Researcher who evaluates messages through biases such as loss aversion and social proof.",
          ("bias", "incentive", "framing", "choice"),
          expert=True, social_proof=0.9, urgency=0.6, data=0.6, curiosity=0.4, price=0.3, hype=-0.5),
)

BASE_BY_ID: dict[str, Persona] = {p.id: p for p in BASE_PERSONAS}

# Words that shift a custom persona's traits, so custom personas built from different customer
# clusters answer differently (the rest of their traits come from a hash of their description).
_TRAIT_HINTS: dict[str, tuple[str, ...]] = {
    "price": ("price", "budget", "discount", "cheap", "deal", "cost", "value", "free", "low"),
    "urgency": ("fast", "urgent", "now", "quick", "busy"),
    "brevity": ("mobile", "short", "busy", "young"),
    "data": ("data", "analytics", "roi", "metric", "enterprise", "b2b", "report"),
    "social_proof": ("community", "social", "reviews", "peers"),
    "curiosity": ("new", "explore", "early", "innov", "trial"),
    "hype": ("excit", "fun", "trend"),
    "personal": ("loyal", "vip", "returning", "personal", "long-time"),
    "tech": ("developer", "technical", "api", "engineer", "saas", "integrat"),
    "trust": ("enterprise", "regulated", "security", "compliance", "churn", "risk", "cautious"),
}


def custom_traits(text: str) -> dict[str, float]:
    """Trait weights for a custom persona described by `text` (deterministic)."""
    lowered = text.lower()
    digest = hashlib.sha256(f"custom-traits:{lowered}".encode()).digest()
    traits: dict[str, float] = {}
    for i, trait in enumerate(TRAITS):
        base = (digest[i] / 255.0 - 0.5) * 1.2  # -0.6..0.6
        hint = sum(0.5 for word in _TRAIT_HINTS[trait] if word in lowered)
        traits[trait] = round(max(-1.5, min(1.5, base + hint)), 3)
    return traits
