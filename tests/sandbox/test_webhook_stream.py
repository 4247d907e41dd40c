"""The sandbox webhook stream (funnels, spike, duplicates, reordering) and its signed replay."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import END

from cio_mavera.customerio.webhooks import parse_event
from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.retention.pipeline import ReceiverThread
from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.queues import SqliteQueue
from cio_mavera.sandbox.webhooks import generate_events, replay, webhook_stream
from cio_mavera.sandbox.workspace import generate_workspace

SECRET = "stream-test-secret"


@pytest.fixture(scope="module")
def workspace():
    return generate_workspace(seed=7, customers=2000, end=END)


@pytest.fixture(scope="module")
def events(workspace):
    return generate_events(workspace, 6000, seed=7)


def test_stream_is_deterministic_for_a_seed(workspace, events):
    assert generate_events(workspace, 6000, seed=7) == events
    assert generate_events(workspace, 6000, seed=8) != events


def test_stream_has_exactly_n_events_with_resent_duplicates(events):
    assert len(events) == 6000
    duplicates = [e for e in events if e.duplicate]
    assert len(duplicates) == 120
    first_seen: dict[str, bytes] = {}
    for event in events:
        if event.duplicate:
            assert first_seen[event.event_id] == event.body  # same bytes, sent earlier
        else:
            assert event.event_id not in first_seen
            first_seen[event.event_id] = event.body


def test_every_body_is_a_documented_envelope(events):
    for event in events:
        parsed = parse_event(event.body)
        assert parsed.is_known, (parsed.object_type, parsed.metric)
        assert parsed.cio_id and parsed.timestamp == event.timestamp


def test_email_events_carry_delivery_fields(events):
    emails = [json.loads(e.body) for e in events if e.object_type == "email"]
    assert emails
    for envelope in emails:
        data = envelope["data"]
        for key in ("campaign_id", "action_id", "delivery_id", "identifiers", "recipient", "subject"):
            assert key in data, (envelope["metric"], key)
        if envelope["metric"] == "clicked":
            assert data["href"].startswith("https://") and isinstance(data["link_id"], int)
        if envelope["metric"] == "bounced":
            assert data["failure_message"]


def test_funnels_follow_sent_delivered_opened_clicked_converted_in_time(events):
    order = {"sent": 0, "delivered": 1, "bounced": 1, "opened": 2, "clicked": 3, "converted": 4}
    by_delivery: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event in events:
        data = json.loads(event.body)["data"]
        if "delivery_id" in data and event.metric in order and not event.duplicate:
            by_delivery[data["delivery_id"]].append((event.timestamp, event.metric))
    metrics = Counter(m for steps in by_delivery.values() for _t, m in steps)
    assert all(metrics[m] > 0 for m in order)
    for steps in by_delivery.values():
        times = {m: t for t, m in steps}
        ranked = sorted(times, key=lambda m: order[m])
        human = [times[m] for m in ranked if m != "opened"]  # prefetch opens are machine, early
        assert human == sorted(human)


def test_some_events_arrive_out_of_order(events):
    stamps = [e.timestamp for e in events if not e.duplicate]
    inversions = sum(1 for a, b in zip(stamps, stamps[1:], strict=False) if b < a)
    assert inversions > 50


def test_timestamps_cover_the_last_two_weeks(workspace, events):
    first, last = min(e.timestamp for e in events), max(e.timestamp for e in events)
    assert last - first > 12 * 86400
    assert last - first <= 14 * 86400 + 3 * 86400  # funnel tails may run a little past the window


def test_planted_spike_shows_in_the_stream(workspace, events):
    spike = workspace.truth["spike"]
    labels = dict(zip(workspace.customers["cio_id"].tolist(), workspace.cluster_labels.tolist(), strict=True))
    delivered: Counter = Counter()
    churned: Counter = Counter()
    for event in events:
        if event.duplicate:
            continue
        envelope = json.loads(event.body)
        data = envelope["data"]
        if data.get("action_id") != spike["action_id"]:
            continue
        in_cluster = labels[data["identifiers"]["cio_id"]] == spike["cluster"]
        if event.metric == "delivered" and spike["start"] <= event.timestamp < spike["end"]:
            delivered[in_cluster] += 1
        if event.metric in ("unsubscribed", "spammed") and spike["start"] <= event.timestamp < spike["end"] + 86400:
            churned[in_cluster] += 1
    assert delivered[True] >= 50 and delivered[False] >= 50
    spike_rate = churned[True] / delivered[True]
    other_rate = churned[False] / delivered[False]
    assert spike_rate > 0.05
    assert spike_rate > 5 * max(other_rate, 0.005)


def test_bad_parameters_are_rejected(workspace):
    with pytest.raises(InvalidParameter):
        generate_events(workspace, -1)
    with pytest.raises(InvalidParameter):
        generate_events(workspace, 10, duplicate_rate=1.5)


def test_replay_signs_each_request_and_summarises(tmp_path: Path):
    events = webhook_stream(seed=3, customers=300, n_events=300, end=END)
    queue = SqliteQueue(tmp_path / "q.sqlite3")
    try:
        with ReceiverThread(create_app(queue, SECRET)) as server:
            url = server.url + WEBHOOK_PATH
            summary = replay(url, events, SECRET, concurrency=4)
            rejected = replay(url, events[:20], "wrong-secret", concurrency=2)
            throttled = replay(url, events[:10], SECRET, rate=200, concurrency=2)
        unique = {e.event_id for e in events}
        assert summary["sent"] == 300 and summary["acknowledged"] == 300 and summary["failed"] == 0
        assert summary["duplicates_acknowledged"] == sum(e.duplicate for e in events)
        assert summary["by_status"] == {"200": 300}
        assert queue.event_ids() == unique
        assert rejected["failed"] == 20 and rejected["by_status"] == {"401": 20}
        assert throttled["acknowledged"] == 10 and throttled["duplicates_acknowledged"] == 10
    finally:
        queue.close()


def test_replay_reports_connection_failures_without_raising():
    summary = replay("http://127.0.0.1:1/webhooks/customerio", [b'{"event_id":"x"}'], SECRET, concurrency=1,
                     timeout_s=2)
    assert summary["failed"] == 1 and summary["acknowledged"] == 0
    assert next(iter(summary["by_status"])).startswith("error:")
