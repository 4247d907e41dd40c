"""Customer.io reporting webhooks: request signatures and the event envelope (reference §5).

Signature: hex HMAC-SHA256 of `v0:<X-CIO-Timestamp>:<raw body>` keyed with the webhook signing key.
The envelope is `{event_id, object_type, metric, timestamp, data}`; unknown object types and metrics
are kept as they are, because Customer.io adds channels and metrics over time.

The parser is strict about what could not have come from Customer.io (a Go service: UTF-8 JSON, no
NaN, no duplicate keys, no lone surrogates) and about what the event log must be able to store
(a plausible time, ids that fit int64, bounded nesting). A body that fails raises MalformedWebhook
with a short `code`; the receiver and the worker keep such bodies as dead letters, never refuse them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CioMaveraError
from ..settings import Secret, Settings

SIGNATURE_VERSION = "v0"
TIMESTAMP_HEADER = "X-CIO-Timestamp"
SIGNATURE_HEADER = "X-CIO-Signature"
MAX_ID_LENGTH = 256
# Real envelopes nest 4-5 levels (data.headers.<name>[values]); deeper bodies are dead-lettered so no
# later reader (pandas, json in a notebook) can hit RecursionError on a stored payload.
MAX_DEPTH = 32
# Customer.io ids are int64; a longer integer anywhere in a body is not one of theirs.
MAX_INT_DIGITS = 20
INT64_MAX = 2**63 - 1
# Event times the log accepts (2000-01-01 .. 2100-01-01 UTC). A value 1,000 times that is read as
# milliseconds; anything else cannot be placed in time and is dead-lettered.
EARLIEST_TIMESTAMP = 946_684_800
LATEST_TIMESTAMP = 4_102_444_800
# Why a body was not usable: MalformedWebhook.code (dead letters and /metrics count by it).
REASONS = (
    "encoding",       # not strict UTF-8 (a BOM, UTF-16/32, invalid bytes)
    "json",           # not JSON
    "number",         # NaN, Infinity, a float overflowing to infinity, an integer over 20 digits
    "duplicate_key",  # the same key twice in one object
    "surrogate",      # a lone UTF-16 surrogate escape (\ud800) anywhere
    "depth",          # nested deeper than MAX_DEPTH
    "shape",          # not an object, or `data` not an object
    "missing_field",  # no event_id / metric / object_type
    "bad_field",      # an id that is not a short, printable string
    "timestamp",      # a timestamp that is not a plausible unix time
    "id_range",       # a numeric id outside int64
)
# The key the sandbox replay signs with and a sandbox-mode receiver accepts when CIO_WEBHOOK_SECRET is
# unset. Public on purpose: it protects nothing, and real Customer.io requests fail against it.
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"

# Object types and metrics documented in reference §5.4; anything else is accepted and flagged unknown.
KNOWN_METRICS: dict[str, frozenset[str]] = {
    "customer": frozenset({"subscribed", "unsubscribed", "cio_subscription_preferences_changed"}),
    "email": frozenset({
        "drafted", "attempted", "sent", "delivered", "opened", "clicked", "converted",
        "unsubscribed", "bounced", "dropped", "spammed", "failed", "undeliverable", "deferred",
    }),
    "push": frozenset({
        "drafted", "attempted", "sent", "delivered", "opened", "clicked", "converted",
        "bounced", "dropped", "failed", "undeliverable",
    }),
    "sms": frozenset({
        "drafted", "attempted", "sent", "delivered", "clicked", "converted", "bounced",
        "failed", "undeliverable", "replied",
    }),
    "whatsapp": frozenset({
        "drafted", "attempted", "sent", "delivered", "opened", "clicked", "converted",
        "bounced", "dropped", "failed", "undeliverable", "replied",
    }),
    "in_app": frozenset({
        "drafted", "attempted", "sent", "opened", "clicked", "converted", "failed", "undeliverable",
    }),
    "slack": frozenset({"drafted", "attempted", "sent", "clicked", "converted", "failed", "undeliverable"}),
    "webhook": frozenset({"drafted", "attempted", "sent", "clicked", "failed", "undeliverable"}),
}
# Channel-caused subscription changes carry the channel as object_type (reference §5.4 "customer").
_SUBSCRIPTION_METRICS = KNOWN_METRICS["customer"]


class MalformedWebhook(CioMaveraError, ValueError):
    """The body is not a usable reporting-webhook envelope; `code` names why (one of REASONS)."""

    def __init__(self, message: str, code: str = "shape", event_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.event_id = event_id  # when the body had a usable one


def webhook_secret_for(settings: Settings) -> Secret:
    """The key to sign sandbox traffic with: CIO_WEBHOOK_SECRET, else the public sandbox key.

    Raises ConfigError when CIO_MAVERA_MODE=live and CIO_WEBHOOK_SECRET is not set. A receiver that
    may see live events verifies with `receiver.intake.receiver_secret` instead, which never falls
    back to the public key when Customer.io keys are set.
    """
    if settings.webhook_secret:
        return settings.webhook_secret
    settings.resolve_mode("webhooks")  # live without the key raises; otherwise the mode is sandbox
    return Secret(SANDBOX_WEBHOOK_SECRET)


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The hex `X-CIO-Signature` Customer.io would send for `body` at `timestamp`."""
    message = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """True when `signature` matches `body` and `timestamp` (constant-time comparison)."""
    expected = sign(secret, timestamp, body)
    # compare_digest on str requires ASCII; a non-ASCII header is simply wrong.
    try:
        return hmac.compare_digest(expected, signature.strip().lower())
    except TypeError:
        return False


def signed_headers(secret: str | bytes, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers for POSTing `body` as Customer.io does (timestamp defaults to now)."""
    ts = str(int(time.time()) if timestamp is None else int(timestamp))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(secret, ts, body),
    }


def parse_timestamp(value: str | None) -> int | None:
    """The integer unix seconds in an `X-CIO-Timestamp` header, or None when absent or not an integer."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 20 or not value.lstrip("-").isdigit() or not value.isascii():
        return None
    return int(value)


@dataclass  # not frozen: that costs 2 us per event on the receiver's hot path; treat it as read-only
class WebhookEvent:
    """One validated reporting-webhook event: the log's columns, and `payload`, the whole envelope."""

    event_id: str
    object_type: str
    metric: str
    timestamp: int | None
    data: dict[str, Any]
    payload: dict[str, Any] = field(repr=False, compare=False)
    campaign_id: int | None = None
    action_id: int | None = None
    broadcast_id: int | None = None
    newsletter_id: int | None = None
    delivery_id: str | None = None
    cio_id: str | None = None
    customer_id: str | None = None  # the workspace's own person id (identifiers.id, else customer_id)

    @property
    def is_known(self) -> bool:
        """True when the object type and metric are documented in reference §5.4."""
        metrics = KNOWN_METRICS.get(self.object_type)
        if metrics is None:
            return False
        return self.metric in metrics or self.metric in _SUBSCRIPTION_METRICS

    @property
    def identifiers(self) -> dict[str, Any]:
        """`data.identifiers` (`id`, `email`, `cio_id`), or {} when absent."""
        return _identifiers(self.data)

    def to_json(self) -> bytes:
        """The envelope as compact JSON bytes (unknown fields preserved)."""
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False).encode()


def _identifiers(data: Mapping[str, Any]) -> dict[str, Any]:
    value = data.get("identifiers")
    return value if isinstance(value, dict) else {}


# -- strict decoding -------------------------------------------------------------------------------


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise MalformedWebhook(f"webhook body holds {name}, which JSON does not allow", "number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedWebhook(f"webhook body holds a number too large for a float ({text[:40]})", "number")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise MalformedWebhook(f"webhook body holds a {len(text)}-digit integer", "number")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise MalformedWebhook(f"webhook body repeats the key {key!r} in one object", "duplicate_key")
            seen.add(key)
    return found


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedWebhook("webhook body holds a lone UTF-16 surrogate escape", "surrogate") from None


def _check_depth(value: Any) -> None:
    """Raise when containers nest deeper than MAX_DEPTH (a walk over containers only, not strings)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedWebhook(f"webhook body nests deeper than {MAX_DEPTH} levels", "depth")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _check_tree(value: Any) -> None:
    """Raise unless every string (keys too) is valid Unicode."""
    stack = [value]
    while stack:
        node = stack.pop()
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in children:
            if isinstance(key, str):
                _check_text(key)
            if isinstance(child, str):
                _check_text(child)
            elif isinstance(child, dict | list):
                stack.append(child)


def decode_json(raw: bytes | str) -> Any:
    """The JSON value of `raw`, read strictly (UTF-8, no BOM, NaN, duplicate keys, lone surrogates)."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raw = bytes(raw)
        if b"\x00" in raw[:4]:  # JSON text starts with ASCII; NULs there mean UTF-16 or UTF-32
            raise MalformedWebhook("webhook body is UTF-16 or UTF-32, not UTF-8", "encoding")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedWebhook("webhook body is not valid UTF-8", "encoding") from None
    else:
        text = raw
        if not text.isascii():
            _check_text(text)  # a str from Python may hold a lone surrogate itself, not only its escape
    if text.startswith("\ufeff"):
        raise MalformedWebhook("webhook body starts with a byte-order mark", "encoding")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                           parse_int=_bounded_int, object_pairs_hook=_unique_keys)
    except MalformedWebhook:
        raise
    except RecursionError:  # nested deeper than the decoder's stack allows: far beyond MAX_DEPTH
        raise MalformedWebhook(f"webhook body nests deeper than {MAX_DEPTH} levels", "depth") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError
        raise MalformedWebhook(f"webhook body is not valid JSON ({type(exc).__name__})", "json") from None
    if text.count("[") + text.count("{") > MAX_DEPTH:  # else it cannot nest that deep
        _check_depth(value)
    # Strict UTF-8 holds no surrogates, so only a \uD800-\uDFFF escape can make one: walk the
    # decoded value only when the text has such an escape (real pairs included), which is rare.
    if _SURROGATE_ESCAPE.search(text):
        if isinstance(value, dict | list):
            _check_tree(value)
        elif isinstance(value, str):
            _check_text(value)
    return value


# -- the envelope ----------------------------------------------------------------------------------


def _clean_id(value: str, name: str) -> str:
    if len(value) > MAX_ID_LENGTH:
        raise MalformedWebhook(f"webhook envelope '{name}' is longer than {MAX_ID_LENGTH} characters",
                               "bad_field")
    if not value.isprintable():  # NUL, newlines, other control characters: nothing an id holds
        raise MalformedWebhook(f"webhook envelope '{name}' holds control characters", "bad_field")
    return value


def _required_str(envelope: Mapping[str, Any], name: str) -> str:
    value = envelope.get(name)
    if value is None:
        raise MalformedWebhook(f"webhook envelope needs a non-empty string '{name}'", "missing_field")
    if not isinstance(value, str) or not value.strip():
        raise MalformedWebhook(f"webhook envelope needs a non-empty string '{name}'", "bad_field")
    return _clean_id(value, name)


def _object_type(envelope: Mapping[str, Any], metric: str) -> str:
    # The spec does not require object_type on cio_subscription_preferences_changed; a change no
    # channel caused is a `customer` event (reference §5.4).
    if envelope.get("object_type") is None and metric == "cio_subscription_preferences_changed":
        return "customer"
    return _required_str(envelope, "object_type")


def _seconds(value: int) -> int:
    if EARLIEST_TIMESTAMP <= value < LATEST_TIMESTAMP:
        return value
    if EARLIEST_TIMESTAMP * 1000 <= value < LATEST_TIMESTAMP * 1000:
        return value // 1000  # milliseconds
    raise MalformedWebhook(f"webhook timestamp {value} is not a unix time between 2000 and 2100",
                           "timestamp")


def _event_timestamp(value: object) -> int | None:
    """Unix seconds, None when absent; raises for a value that cannot be placed in time."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return _seconds(value)
    if isinstance(value, float):  # finite: the decoder refused the rest
        return _seconds(int(value))
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is not None:
            return _seconds(parsed)
    raise MalformedWebhook(f"webhook timestamp of type {type(value).__name__} is not unix seconds",
                           "timestamp")


def _numeric_id(data: Mapping[str, Any], name: str) -> int | None:
    """An int64 id (an int or a digit string, as the App API's string ids); None when absent or odd."""
    value = data.get(name)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value) if len(value) <= MAX_INT_DIGITS else INT64_MAX + 1
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise MalformedWebhook(f"webhook data.{name} does not fit in int64", "id_range")
    return value


def _text_id(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    return _clean_id(value if isinstance(value, str) else json.dumps(value), name)


def parse_event(raw: bytes | str) -> WebhookEvent:
    """Decode and validate a reporting-webhook body; raises MalformedWebhook and nothing else."""
    envelope = decode_json(raw)
    if not isinstance(envelope, dict):
        raise MalformedWebhook(f"webhook body must be a JSON object, got {type(envelope).__name__}")
    event_id = _required_str(envelope, "event_id")
    try:
        return _event(envelope, event_id)
    except MalformedWebhook as exc:
        exc.event_id = event_id
        raise


def _event(envelope: dict[str, Any], event_id: str) -> WebhookEvent:
    metric = _required_str(envelope, "metric")
    object_type = _object_type(envelope, metric)
    data = envelope.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MalformedWebhook(f"webhook envelope 'data' must be an object, got {type(data).__name__}")
    identifiers = _identifiers(data)
    return WebhookEvent(
        event_id=event_id,
        object_type=object_type,
        metric=metric,
        timestamp=_event_timestamp(envelope.get("timestamp")),
        data=data,
        payload=envelope,
        campaign_id=_numeric_id(data, "campaign_id"),
        action_id=_numeric_id(data, "action_id"),
        broadcast_id=_numeric_id(data, "broadcast_id"),
        newsletter_id=_numeric_id(data, "newsletter_id"),
        delivery_id=_text_id(data.get("delivery_id"), "delivery_id"),
        cio_id=_text_id(identifiers.get("cio_id"), "cio_id"),
        customer_id=_text_id(identifiers.get("id") or data.get("customer_id"), "customer_id"),
    )
