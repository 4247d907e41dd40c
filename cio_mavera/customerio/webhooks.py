"""Customer.io reporting webhooks: request signatures and the event envelope (reference §5).

Signature: hex HMAC-SHA256 of `v0:<X-CIO-Timestamp>:<raw body>` keyed with the webhook signing key.
The envelope is `{event_id, object_type, metric, timestamp, data}`; unknown object types and metrics
are kept as they are, because Customer.io adds channels and metrics over time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
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
    """The body is not a reporting-webhook envelope (bad JSON or a required field missing)."""


def webhook_secret_for(settings: Settings) -> Secret:
    """The signing key: CIO_WEBHOOK_SECRET, else the public sandbox key when the mode is sandbox.

    Raises ConfigError when CIO_MAVERA_MODE=live and CIO_WEBHOOK_SECRET is not set.
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


@dataclass(frozen=True)
class WebhookEvent:
    """One reporting-webhook event; `payload` is the whole decoded envelope, unknown fields included."""

    event_id: str
    object_type: str
    metric: str
    timestamp: int | None
    data: dict[str, Any]
    payload: dict[str, Any] = field(repr=False, compare=False)

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
        value = self.data.get("identifiers")
        return value if isinstance(value, dict) else {}

    @property
    def cio_id(self) -> str | None:
        value = self.identifiers.get("cio_id")
        return str(value) if value not in (None, "") else None

    @property
    def customer_id(self) -> str | None:
        """The workspace's own person id (`identifiers.id`, falling back to deprecated `customer_id`)."""
        value = self.identifiers.get("id") or self.data.get("customer_id")
        return str(value) if value not in (None, "") else None

    def _int(self, name: str) -> int | None:
        value = self.data.get(name)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return None

    @property
    def campaign_id(self) -> int | None:
        return self._int("campaign_id")

    @property
    def action_id(self) -> int | None:
        return self._int("action_id")

    @property
    def broadcast_id(self) -> int | None:
        return self._int("broadcast_id")

    @property
    def newsletter_id(self) -> int | None:
        return self._int("newsletter_id")

    @property
    def delivery_id(self) -> str | None:
        value = self.data.get("delivery_id")
        return str(value) if value not in (None, "") else None

    def to_json(self) -> bytes:
        """The envelope as compact JSON bytes (unknown fields preserved)."""
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False).encode()


def _required_str(envelope: Mapping[str, Any], name: str) -> str:
    value = envelope.get(name)
    if not isinstance(value, str) or not value.strip():
        raise MalformedWebhook(f"webhook envelope needs a non-empty string '{name}'")
    if len(value) > MAX_ID_LENGTH:
        raise MalformedWebhook(f"webhook envelope '{name}' is longer than {MAX_ID_LENGTH} characters")
    return value


def _event_timestamp(value: object) -> int | None:
    # Lenient on purpose: a 400 makes Customer.io retry and backlog every later webhook for up to
    # 7 days (reference §5.1), so an odd timestamp is kept in the payload rather than rejected.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        return parse_timestamp(value)
    return None


def parse_event(raw: bytes | str) -> WebhookEvent:
    """Decode a reporting-webhook body; raises MalformedWebhook and nothing else on bad input."""
    try:
        envelope = json.loads(raw)
    except (ValueError, RecursionError, TypeError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
        raise MalformedWebhook(f"webhook body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(envelope, dict):
        raise MalformedWebhook(f"webhook body must be a JSON object, got {type(envelope).__name__}")
    event_id = _required_str(envelope, "event_id")
    object_type = _required_str(envelope, "object_type")
    metric = _required_str(envelope, "metric")
    data = envelope.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MalformedWebhook(f"webhook envelope 'data' must be an object, got {type(data).__name__}")
    return WebhookEvent(
        event_id=event_id,
        object_type=object_type,
        metric=metric,
        timestamp=_event_timestamp(envelope.get("timestamp")),
        data=data,
        payload=envelope,
    )
