"""Signature and envelope parsing of Customer.io reporting webhooks (reference §5.2-5.4)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cio_mavera.customerio.webhooks import (
    MAX_DEPTH,
    REASONS,
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
    raw = {"event_id": "e1", "object_type": "carrier_pigeon", "metric": "landed", "timestamp": 1_700_000_005,
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


def test_too_long_event_id_is_malformed():
    with pytest.raises(MalformedWebhook, match="longer than"):
        parse_event(json.dumps({"event_id": "x" * 1000, "object_type": "email", "metric": "sent"}))


# -- what the event log must be able to store (issue 14, items 2 and 4) ---------------------------


def _envelope(**fields) -> dict:
    return {"event_id": "e1", "object_type": "email", "metric": "sent", "timestamp": 1_700_000_000,
            "data": {}, **fields}


def _raw(**fields) -> bytes:
    return json.dumps(_envelope(**fields)).encode()


def test_timestamp_in_milliseconds_is_read_as_milliseconds():
    event = parse_event(_raw(timestamp=1796198777000))
    assert event.timestamp == 1796198777
    assert event.payload["timestamp"] == 1796198777000  # the body itself is kept as sent


@pytest.mark.parametrize("timestamp", [10**14, -10**14, -5, 0, 10**19, "soon", "", True, [1], 4102444800])
def test_timestamp_that_is_not_a_plausible_unix_time_is_malformed(timestamp):
    with pytest.raises(MalformedWebhook) as caught:
        parse_event(_raw(timestamp=timestamp))
    assert caught.value.code == "timestamp"
    assert caught.value.event_id == "e1"


@pytest.mark.parametrize("timestamp", [None, 946684800, 1613063089.75, "1613063089"])
def test_absent_or_plausible_timestamps_are_kept(timestamp):
    event = parse_event(_raw(timestamp=timestamp))
    assert event.timestamp == (None if timestamp is None else int(float(timestamp)))


def test_an_integer_of_thousands_of_digits_is_malformed():
    raw = b'{"event_id":"e1","object_type":"email","metric":"sent","timestamp":' + b"9" * 4000 + b"}"
    with pytest.raises(MalformedWebhook) as caught:
        parse_event(raw)
    assert caught.value.code == "number"


@pytest.mark.parametrize(("data", "column"), [
    ({"campaign_id": 2**63 - 1}, "campaign_id"),
    ({"action_id": "9223372036854775807"}, "action_id"),
    ({"broadcast_id": -(2**63)}, "broadcast_id"),
])
def test_numeric_ids_up_to_int64_are_kept(data, column):
    event = parse_event(_raw(data=data))
    assert getattr(event, column) == int(next(iter(data.values())))


@pytest.mark.parametrize("data", [
    {"campaign_id": 2**63}, {"campaign_id": "99999999999999999999999"}, {"newsletter_id": -(2**63) - 1},
    {"action_id": "9" * 30},
])
def test_numeric_ids_beyond_int64_are_malformed(data):
    with pytest.raises(MalformedWebhook) as caught:
        parse_event(_raw(data=data))
    assert caught.value.code == "id_range"


@pytest.mark.parametrize(("raw", "code"), [
    (_raw(object_type="\ud800"), "surrogate"),
    (_raw(metric="sent\udfff"), "surrogate"),
    (_raw(event_id="\ud800"), "surrogate"),
    (_raw(data={"subject": "hi \udc00"}), "surrogate"),
    (_raw(data={"\ud83d": 1}), "surrogate"),
    (b'{"event_id":"e1","object_type":"email","metric":"sent","x":NaN}', "number"),
    (b'{"event_id":"e1","object_type":"email","metric":"sent","x":-Infinity}', "number"),
    (b'{"event_id":"e1","object_type":"email","metric":"sent","x":1e400}', "number"),
    (b'{"event_id":"e1","object_type":"email","metric":"sent","event_id":"e2"}', "duplicate_key"),
    (b'{"event_id":"e1","object_type":"email","metric":"sent","data":{"a":1,"a":2}}', "duplicate_key"),
    (_raw().decode().encode("utf-16"), "encoding"),
    (_raw().decode().encode("utf-16-le"), "encoding"),
    (_raw().decode().encode("utf-32"), "encoding"),
    (_raw().decode().encode("utf-32-be"), "encoding"),
    (_raw().decode().encode("utf-8-sig"), "encoding"),
    (_raw(data={"subject": "caf\u00e9"}).replace(b"\\u00e9", b"\xe9"), "encoding"),  # Latin-1 byte
    (b'{"event_id":"\xed\xa0\x80","object_type":"email","metric":"sent"}', "encoding"),  # CESU surrogate
    (_raw(event_id="a\u0000b"), "bad_field"),
    (_raw(metric="sent\n"), "bad_field"),
    (_raw(data={"delivery_id": "d\u0000"}), "bad_field"),
    (_raw(data={"identifiers": {"cio_id": "\u0000"}}), "bad_field"),
    (_raw(data={"identifiers": {"id": "x" * 300}}), "bad_field"),
])
def test_bodies_customer_io_could_not_have_sent_are_malformed_with_a_reason(raw, code):
    with pytest.raises(MalformedWebhook) as caught:
        parse_event(raw)
    assert caught.value.code == code


def test_nesting_is_bounded():
    def nested(depth: int) -> bytes:
        inner = "[" * (depth - 2) + "]" * (depth - 2)
        return b'{"event_id":"e1","object_type":"email","metric":"sent","data":{"x":' + inner.encode() + b"}}"

    assert parse_event(nested(MAX_DEPTH)).event_id == "e1"
    for depth in (MAX_DEPTH + 1, 981, 50_000):
        with pytest.raises(MalformedWebhook) as caught:
            parse_event(nested(depth))
        assert caught.value.code == "depth"


def test_brackets_inside_strings_do_not_count_as_nesting():
    event = parse_event(_raw(data={"content": "<p>[" * 100 + "{" * 100 + '\\"]'}))
    assert event.data["content"].startswith("<p>[")


def test_a_python_string_holding_a_lone_surrogate_is_malformed():
    with pytest.raises(MalformedWebhook) as caught:
        parse_event('{"event_id":"\ud800","object_type":"email","metric":"sent"}')
    assert caught.value.code == "surrogate"


def test_subscription_preferences_change_without_object_type_is_a_customer_event():
    raw = json.dumps({"event_id": "p1", "metric": "cio_subscription_preferences_changed",
                      "timestamp": 1_700_000_000, "data": {"identifiers": {"id": "7"}, "content": "{}"}})
    event = parse_event(raw)
    assert (event.object_type, event.customer_id, event.is_known) == ("customer", "7", True)
    with pytest.raises(MalformedWebhook) as caught:  # other metrics still need it
        parse_event(json.dumps({"event_id": "p2", "metric": "opened"}))
    assert caught.value.code == "missing_field"


def test_every_malformed_code_is_a_documented_reason():
    bodies = [b"\xff", b"{", b"[]", b'{"a":NaN}', b'{"a":1,"a":1}', b'["\\ud800"]', b"[" * 40 + b"]" * 40,
              b'{"event_id":"e","metric":"m"}', b'{"event_id":"e\\u0001","metric":"m","object_type":"o"}',
              _raw(timestamp=1), _raw(data={"campaign_id": 2**64})]
    codes = set()
    for raw in bodies:
        with pytest.raises(MalformedWebhook) as caught:
            parse_event(raw)
        codes.add(caught.value.code)
    assert codes == set(REASONS)  # one body for each documented reason


# -- property-based --------------------------------------------------------------------------------

_json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
              | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_name = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and s.isprintable())


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
       timestamp=st.integers(min_value=946_684_800, max_value=4_102_444_799),
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
