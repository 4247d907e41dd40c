"""The sandbox webhook stream (funnels, spike, cycles, broadcasts, duplicates, reordering) and its signed replay."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import END

from cio_mavera.customerio.webhooks import parse_event
from cio_mavera.errors import InvalidParameter
from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.queues import SqliteQueue
from cio_mavera.receiver.server import BackgroundReceiver
from cio_mavera.sandbox.webhooks import generate_events, replay, webhook_stream
from cio_mavera.sandbox.workspace import World, generate_workspace

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
    newsletters = 0
    for envelope in emails:
        data = envelope["data"]
        # A campaign's delivery fields, or a newsletter's (reference §5.3's third variant).
        origin = ("newsletter_id", "content_id") if "newsletter_id" in data else ("campaign_id", "action_id")
        newsletters += "newsletter_id" in data
        for key in (*origin, "delivery_id", "identifiers", "recipient", "subject"):
            assert key in data, (envelope["metric"], key)
        if envelope["metric"] == "clicked":
            assert data["href"].startswith("https://") and isinstance(data["link_id"], int)
        if envelope["metric"] == "bounced":
            assert data["failure_message"]
    assert newsletters > 0  # the realistic world's broadcasts


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


def test_timestamps_cover_the_last_two_weeks_and_stop_before_the_end(workspace, events):
    first, last = min(e.timestamp for e in events), max(e.timestamp for e in events)
    end = int(workspace.end.timestamp())
    assert last - first > 12 * 86400
    assert end - 14 * 86400 <= first and last < end


@pytest.mark.parametrize("world", ["realistic", "clean"])
def test_no_event_lies_at_or_after_the_workspace_end(world):
    # A report made at 08:06: the workspace ends then, and so does everything that has happened.
    end = dt.datetime(2026, 3, 31, 8, 6, 30, tzinfo=dt.UTC)
    ws = generate_workspace(seed=11, customers=1500, end=end, world=World.named(world))
    stream = generate_events(ws, 5000, seed=11)
    assert max(e.timestamp for e in stream) < end.timestamp()
    assert ws.truth["spike"]["end"] <= end.timestamp()
    assert all(b["end"] <= end.timestamp() for b in ws.truth["stream"]["broadcasts"])


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


def test_the_spike_is_an_excess_over_its_own_campaign_and_audience_rate(workspace):
    spike = workspace.truth["spike"]
    plan = workspace.truth["stream"]
    campaign = next(c for c in plan["campaigns"] if c["campaign_id"] == spike["campaign_id"])
    own = campaign["opt_out_rate"]["email"] * plan["audience_opt_out_multipliers"][spike["cluster"]]
    assert spike["baseline_opt_out_rate"] == pytest.approx(own, rel=1e-3)
    assert spike["opt_out_rate"] == pytest.approx(spike["baseline_opt_out_rate"] + 0.09 + 0.025 - 0.0041, rel=1e-3)
    assert spike["ratio"] == pytest.approx(spike["opt_out_rate"] / spike["baseline_opt_out_rate"], rel=1e-3)
    assert spike["campaign_id"] not in plan["high_opt_out_campaigns"]


def test_the_clean_world_keeps_the_old_flat_spike_and_rates():
    ws = generate_workspace(seed=7, customers=2000, end=END, world=World.clean())
    spike, plan = ws.truth["spike"], ws.truth["stream"]
    assert spike["unsubscribe_rate"] == pytest.approx(0.09) and spike["spam_rate"] == pytest.approx(0.025)
    assert plan["broadcasts"] == [] and plan["high_opt_out_campaigns"] == []
    assert {c["opt_out_multiplier"] for c in plan["campaigns"]} == {1.0}


# --- the realistic world's shape, on a long stream -------------------------------------------------


@pytest.fixture(scope="module")
def long_stream(workspace):
    """30,000 bodies as parsed envelopes (no duplicates): enough to see cycles and rates."""
    return [json.loads(e.body) for e in generate_events(workspace, 30_000, seed=3) if not e.duplicate]


def _deliveries(envelopes):
    return [e for e in envelopes if e["metric"] == "delivered"]


def test_sends_follow_a_daily_and_a_weekly_cycle(long_stream):
    campaign = [e for e in _deliveries(long_stream) if "campaign_id" in e["data"]]
    hours = np.bincount([(e["timestamp"] % 86400) // 3600 for e in campaign], minlength=24)
    assert hours.max() > 2.5 * hours.min()
    days = np.array([((e["timestamp"] // 86400) + 3) % 7 for e in campaign])  # 0 = Monday
    per_weekday = np.bincount(days, minlength=7) / 2  # two weeks of each weekday
    assert per_weekday[5:].mean() < 0.8 * per_weekday[:5].mean()


def test_the_clean_stream_is_flat_over_the_day():
    ws = generate_workspace(seed=7, customers=2000, end=END, world=World.clean())
    envelopes = [json.loads(e.body) for e in generate_events(ws, 20_000, seed=3) if not e.duplicate]
    hours = np.bincount([(e["timestamp"] % 86400) // 3600 for e in _deliveries(envelopes)], minlength=24)
    assert hours.max() < 1.5 * hours.min()


def test_broadcasts_are_one_off_bursts_of_newsletter_sends(workspace, long_stream):
    broadcasts = workspace.truth["stream"]["broadcasts"]
    assert len(broadcasts) == 2
    for broadcast in broadcasts:
        sent = [e for e in long_stream if e["metric"] == "sent"
                and e["data"].get("newsletter_id") == broadcast["newsletter_id"]]
        assert len(sent) > 0.05 * sum(e["metric"] == "sent" for e in long_stream)
        assert all(broadcast["start"] <= e["timestamp"] < broadcast["end"] for e in sent)


def test_campaigns_differ_in_opt_out_rate_and_the_steady_high_one_stays_high(workspace, long_stream):
    high = set(workspace.truth["stream"]["high_opt_out_campaigns"])
    assert len(high) == 1
    delivered, opted = Counter(), Counter()
    for e in long_stream:
        campaign = e["data"].get("campaign_id")
        if e["object_type"] == "email" and campaign not in (None, workspace.truth["spike"]["campaign_id"]):
            if e["metric"] == "delivered":
                delivered[campaign in high] += 1
            elif e["metric"] in ("unsubscribed", "spammed"):
                opted[campaign in high] += 1
    assert opted[True] / delivered[True] > 2.5 * opted[False] / delivered[False]


def test_bad_parameters_are_rejected(workspace):
    with pytest.raises(InvalidParameter):
        generate_events(workspace, -1)
    with pytest.raises(InvalidParameter):
        generate_events(workspace, 10, duplicate_rate=1.5)


def test_replay_signs_each_request_and_summarises(tmp_path: Path):
    events = webhook_stream(seed=3, customers=300, n_events=300, end=END)
    queue = SqliteQueue(tmp_path / "q.sqlite3")
    try:
        with BackgroundReceiver(create_app(queue, SECRET)) as server:
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
