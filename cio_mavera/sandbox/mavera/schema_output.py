"""JSON that satisfies a request's JSON Schema, derived from the text and persona (structured output)."""

from __future__ import annotations

import math
import random
from typing import Any

from .base_personas import Persona
from .scoring import affinity, reason, scale_score
from .text import SANDBOX_MARK, keywords, rng_for


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
