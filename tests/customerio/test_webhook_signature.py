"""Signature and envelope parsing of Customer.io reporting webhooks (reference §5.2-5.4)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cio_mavera.customerio.webhooks import (
    MalformedWebhook,
    WebhookEvent,
    parse_event,
    parse_timestamp,
    sign,
    signed_headers,
    verify_signature,
)

SPEC_EXAMPLE = {
    "event_id": "01E4C4CT6YDC7Y5M7FE1GWWPQJ",
    "object_type": "email",
    "metric": "sent",
    "timestamp": 1613063089,
    "data": {
        "action_id": 42, "broadcast_id": 9, "customer_id": "0200000001",
        "delivery_id": "RPILAgUBcRhIBqSfeiIwdIYJKxTY",
        "identifiers": {"id": "42", "email": "test@example.com", "cio_id": "d9c106000001"},
        "recipient": "test@example.com",
    },
}


def test_sign_matches_the_documented_reference_formula():
    body = json.dumps(SPEC_EXAMPLE).encode()
    expected = hmac.new(b"key", b"v0:1613063089:" + body, hashlib.sha256).hexdigest()
    assert sign("key", "1613063089", body) == expected
    assert sign(b"key", 1613063089, body) == expected


def test_verify_signature_accepts_the_right_signature_only():
    body = b'{"event_id":"x"}'
    good = sign("secret", "100", body)
    assert verify_signature("secret", "100", body, good)
    assert verify_signature("secret", "100", body, good.upper())  # hex case does not matter
    assert not verify_signature("other", "100", body, good)
    assert not verify_signature("secret", "101", body, good)
    assert not verify_signature("secret", "100", body + b" ", good)
    assert not verify_signature("secret", "100", body, "")


def test_verify_signature_rejects_non_ascii_signature_without_raising():
    assert not verify_signature("secret", "100", b"{}", "é" * 64)


def test_signed_headers_carry_timestamp_and_matching_signature():
    headers = signed_headers("secret", b"{}", timestamp=1700000000)
    assert headers["X-CIO-Timestamp"] == "1700000000"
    assert verify_signature("secret", "1700000000", b"{}", headers["X-CIO-Signature"])


@pytest.mark.parametrize(("value", "expected"), [
    ("1700000000", 1700000000), (" 12 ", 12), ("-5", -5), (None, None), ("", None),
    ("12.5", None), ("abc", None), ("1" * 30, None), ("١٢٣", None),
])
def test_parse_timestamp_accepts_integer_seconds_only(value, expected):
    assert parse_timestamp(value) == expected


def test_parse_event_reads_the_spec_example():
    event = parse_event(json.dumps(SPEC_EXAMPLE).encode())
    assert (event.event_id, event.object_type, event.metric, event.timestamp) == (
        "01E4C4CT6YDC7Y5M7FE1GWWPQJ", "email", "sent", 1613063089)
    assert event.cio_id == "d9c106000001"
    assert event.customer_id == "42"
    assert event.action_id == 42 and event.broadcast_id == 9 and event.campaign_id is None
    assert event.delivery_id == "RPILAgUBcRhIBqSfeiIwdIYJKxTY"
    assert event.is_known


def test_parse_event_keeps_unknown_object_types_and_fields():
    raw = {"event_id": "e1", "object_type": "carrier_pigeon", "metric": "landed", "timestamp": 5,
           "data": {"feathers": 3}, "extra": {"kept": True}}
    event = parse_event(json.dumps(raw))
    assert not event.is_known
    assert event.payload["extra"] == {"kept": True}
    assert json.loads(event.to_json()) == raw


def test_subscription_change_under_a_channel_object_type_is_known():
    event = parse_event(b'{"event_id":"e","object_type":"sms","metric":"unsubscribed","data":{}}')
    assert event.is_known


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1,2]", b'"event"', b"null", b"\xff\xfe",
    b'{"object_type":"email","metric":"sent"}',
    b'{"event_id":"","object_type":"email","metric":"sent"}',
    b'{"event_id":"e","metric":"sent"}',
    b'{"event_id":"e","object_type":"email"}',
    b'{"event_id":7,"object_type":"email","metric":"sent"}',
    b'{"event_id":"e","object_type":"email","metric":"sent","data":[1]}',
    b'[' * 100000,
])
def test_parse_event_rejects_non_envelopes_with_malformed_webhook(body):
    with pytest.raises(MalformedWebhook):
        parse_event(body)


def test_parse_event_keeps_an_odd_timestamp_instead_of_rejecting():
    event = parse_event(b'{"event_id":"e","object_type":"email","metric":"sent","timestamp":"soon"}')
    assert event.timestamp is None
    assert event.payload["timestamp"] == "soon"


def test_too_long_event_id_is_malformed():
    with pytest.raises(MalformedWebhook, match="longer than"):
        parse_event(json.dumps({"event_id": "x" * 1000, "object_type": "email", "metric": "sent"}))


# -- property-based --------------------------------------------------------------------------------

_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_name = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_event_on_any_bytes_raises_only_malformed_webhook(raw):
    try:
        event = parse_event(raw)
    except MalformedWebhook:
        return
    assert isinstance(event, WebhookEvent)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_parse_event_on_any_json_raises_only_malformed_webhook(value):
    try:
        event = parse_event(json.dumps(value))
    except MalformedWebhook:
        return
    assert event.event_id == value["event_id"]


@settings(max_examples=200, deadline=None)
@given(event_id=_name, object_type=_name, metric=_name,
       timestamp=st.integers(min_value=0, max_value=2**40),
       data=st.dictionaries(st.text(max_size=10), _json, max_size=5),
       extra=st.dictionaries(st.sampled_from(["x_extra", "version"]), _json_leaf, max_size=2))
def test_valid_envelopes_round_trip(event_id, object_type, metric, timestamp, data, extra):
    envelope = {"event_id": event_id, "object_type": object_type, "metric": metric,
                "timestamp": timestamp, "data": data, **extra}
    event = parse_event(json.dumps(envelope).encode())
    assert (event.event_id, event.object_type, event.metric, event.timestamp, event.data) == (
        event_id, object_type, metric, timestamp, data)
    again = parse_event(event.to_json())
    assert again == event
    assert again.payload == envelope
