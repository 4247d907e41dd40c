"""A property of the whole intake (issue 14, item 7): whatever signed bodies arrive (any bytes, any
JSON, extreme numbers, odd strings, odd encodings and depths), every request is answered 2xx, the
worker never fails, and every acknowledged body is in the event log or the dead-letter store exactly
once. Bodies that an older receiver queued without today's checks go straight into the queue and
must come out the same way. Deterministic: derandomized, bounded examples, no database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections import Counter
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_mavera.customerio.webhooks import KNOWN_METRICS, parse_event, signed_headers
from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.queues import EventRejected, SqliteQueue
from cio_mavera.receiver.worker import drain_once, read_event_log

SECRET = "whsec-property"
NOW = 1_800_000_000

_odd_char = (st.characters() | st.characters(categories=["Cs"])
             | st.sampled_from(["\x00", "\ufeff", "\u2028", "\\", '"', "\x7f"]))
_odd_text = st.text(alphabet=_odd_char, max_size=12)
_extreme_int = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([1796198777000, 10**14, -(10**14), 2**63, -(2**63) - 1, 10**19, 0, NOW]),
)
_extreme_number = _extreme_int | st.floats()  # NaN and infinities included (json.dumps writes them)
_leaf = st.none() | st.booleans() | _extreme_number | _odd_text
_any_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(_odd_text, inner, max_size=3), max_leaves=12)
_known_metric = st.sampled_from(sorted(KNOWN_METRICS["email"]))
_timestamp = _extreme_number | st.sampled_from(["1800000000", "soon", ""]) | st.none()
_id_value = _extreme_int | st.text(alphabet="0123456789", min_size=1, max_size=30) | _odd_text


def _mostly(value, *odd):
    """`value` five times in six, else one of `odd`: each field is odd now and then, so every check
    is reached and some bodies with extreme but valid values are stored."""
    return st.sampled_from([False] * 5 + [True]).flatmap(lambda is_odd: st.one_of(*odd) if is_odd
                                                         else st.just(value))


@st.composite
def _envelope(draw, index: int) -> bytes:
    """An envelope-shaped body with odd values, missing fields, odd encodings or depth here and there."""
    body: dict = {
        "event_id": draw(_mostly(f"id{index}", st.just("shared"), _odd_text)),
        "object_type": draw(_mostly("email", st.sampled_from(sorted(KNOWN_METRICS)), _odd_text, st.none())),
        "metric": draw(_mostly("opened", _known_metric, _odd_text)),
        "timestamp": draw(_mostly(NOW - 5, _timestamp)),
    }
    data = {name: draw(_mostly(7, _id_value)) for name in ("campaign_id", "action_id", "delivery_id")}
    data["identifiers"] = {"id": draw(_mostly("u1", _id_value)), "cio_id": draw(_mostly("c1", _id_value))}
    data["extra"] = draw(_mostly(None, _any_json))
    for _ in range(draw(_mostly(0, st.integers(1, 40)))):
        data = [data]
    body["data"] = data
    for name in draw(_mostly((), st.sets(st.sampled_from(["event_id", "metric", "object_type"]), min_size=1))):
        body.pop(name, None)
    body = {name: value for name, value in body.items() if value is not None}
    text = json.dumps(body, ensure_ascii=draw(_mostly(True, st.just(False))))
    if draw(_mostly(False, st.just(True))):
        text = text[:-1] + ',"metric":"sent"}'  # a duplicate key when metric is already there
    encoding = draw(_mostly("utf-8", st.sampled_from(["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])))
    return text.encode(encoding, "surrogatepass")


def _issue_14(index: int) -> st.SearchStrategy[bytes]:
    """The reproductions from issue 14, each under this arrival's own event_id."""
    head = f'{{"event_id":"p{index}","object_type":"email","metric":"opened",'.encode()
    return st.sampled_from([
        head + b'"timestamp":1796198777000}', head + b'"timestamp":1e14}', head + b'"timestamp":-1e14}',
        head + b'"timestamp":' + b"9" * 4000 + b"}", head + b'"data":{"campaign_id":"99999999999999999999"}}',
        f'{{"event_id":"p{index}","object_type":"\\ud800","metric":"opened"}}'.encode(),
        f'{{"event_id":"p{index}","object_type":"email","metric":"x\\udfff"}}'.encode(),
        b'{"event_id":"\\ud800","object_type":"email","metric":"opened"}',
        head + b'"data":' + b"[" * 981 + b"]" * 981 + b"}", head + b'"x":NaN}', head + b'"metric":"sent"}',
        (head + b'"timestamp":1800000000}').decode().encode("utf-16"), head + b'"data":{"delivery_id":"\\u0000"}}',
        f'{{"event_id":"p{index}","metric":"cio_subscription_preferences_changed"}}'.encode(),
    ])


def _valid(index: int) -> st.SearchStrategy[bytes]:
    return st.builds(lambda metric, ts: json.dumps({
        "event_id": f"ok{index}", "object_type": "email", "metric": metric, "timestamp": ts,
        "data": {"campaign_id": 3, "identifiers": {"id": "u1", "cio_id": "c1"}}}).encode(),
        st.sampled_from(sorted(KNOWN_METRICS["email"])), st.integers(NOW - 86400, NOW))


@st.composite
def _arrivals(draw) -> list[tuple[str, bytes]]:
    """(channel, body): "signed" goes through the receiver, "legacy" straight into the queue."""
    out = []
    for index in range(draw(st.integers(1, 8))):
        body = draw(st.one_of(st.binary(max_size=200), _any_json.map(lambda v: json.dumps(v).encode()),
                              _envelope(index), _issue_14(index), _valid(index)))
        out.append((draw(st.sampled_from(["signed", "signed", "legacy"])), body))
    return out


def _old_receivers_event_id(body: bytes) -> str | None:
    """The event_id the receiver before issue 14 queued a body under (it only required a string)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) and event_id.strip() and len(event_id) <= 256 else None


async def _deliver(app, queue: SqliteQueue, arrivals: list[tuple[str, bytes]]) -> list[tuple[bytes, str, str]]:
    """Each arrival as (body, status, event_id-or-""): the receiver's answer, or the queue's for legacy."""
    results = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        for channel, body in arrivals:
            event_id = _old_receivers_event_id(body)
            if channel == "legacy" and event_id is not None:
                try:
                    new = await asyncio.wait_for(queue.enqueue(event_id, body, NOW), 60)
                except EventRejected:
                    results.append((body, "refused", event_id))  # not acknowledged: nothing to find
                    continue
                results.append((body, "accepted" if new else "duplicate", event_id))
                continue
            response = await asyncio.wait_for(client.post(WEBHOOK_PATH, content=body,
                                                          headers=signed_headers(SECRET, body, NOW)), 60)
            assert response.status_code == 200, (response.status_code, response.text, body[:200])
            answer = response.json()
            results.append((body, answer["status"], answer.get("event_id", "")))
    return results


def _check(results: list[tuple[bytes, str, str]], queue: SqliteQueue, events: Path) -> None:
    log = read_event_log(events)
    logged = Counter(log["event_id"])
    assert all(count == 1 for count in logged.values())
    letters = queue.dead_letters()
    keys = Counter(letter.key for letter in letters)
    assert all(count == 1 for count in keys.values())
    accepted: set[str] = set()
    for body, status, event_id in results:
        key = hashlib.sha256(body).hexdigest()  # a dead letter is the body, stored once however it came
        if status == "dead_lettered":
            assert keys[key] == 1
        elif status == "accepted":
            in_log, quarantined = logged[event_id] == 1, keys[key] == 1
            assert in_log != quarantined, (event_id, in_log, quarantined)  # exactly one of the two
            accepted.add(event_id)
        elif status == "duplicate":
            assert event_id in accepted
        else:
            assert status == "refused" and logged[event_id] == 0
    assert set(logged) <= accepted  # nothing in the log that was not acknowledged
    assert set(keys) <= {hashlib.sha256(body).hexdigest() for body, _s, _e in results}
    for payload in log["payload"]:
        parse_event(payload.encode())  # what is stored reads back cleanly: no garbage in the log


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_arrivals())
def test_every_signed_body_is_answered_and_ends_in_the_log_or_the_dead_letters_exactly_once(arrivals):
    with tempfile.TemporaryDirectory(prefix="cio-intake-") as tmp:
        queue = SqliteQueue(Path(tmp) / "q.sqlite3")
        try:
            app = create_app(queue, SECRET, clock=lambda: float(NOW))
            results = asyncio.run(_deliver(app, queue, arrivals))
            drain_once(queue, Path(tmp) / "events", batch=3)  # small batches: poison shares them
            drain_once(queue, Path(tmp) / "events")  # a second pass finds nothing left
            assert queue.depth() == 0
            _check(results, queue, Path(tmp) / "events")
        finally:
            queue.close()
