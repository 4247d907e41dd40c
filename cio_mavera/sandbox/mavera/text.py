"""Seeds and small text helpers behind every deterministic answer of the Mavera sandbox.

Everything the sandbox writes is a pure function of its inputs: a `random.Random` seeded from the
sha256 of a canonical JSON of them, so the same request and persona always give the same bytes.
Generated prose starts with `SANDBOX_MARK` so nobody mistakes it for real research.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from typing import Any

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
