"""Deliveries exports backfill job 3's event log before the receiver; a delivery event counts once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import END

from cio_mavera.cli import main
from cio_mavera.connect import Connection
from cio_mavera.customerio.exports import PollPolicy
from cio_mavera.eventlog.backfill import backfill_deliveries, receiver_start
from cio_mavera.eventlog.layout import BACKFILL_MANIFEST
from cio_mavera.eventlog.query import HourlyCounts, read_events
from cio_mavera.jobs.retention import cohorts
from cio_mavera.receiver.queues import QueuedEvent
from cio_mavera.receiver.worker import EventLog, read_event_log

UNTIL = int(END.timestamp())
FAST = PollPolicy(first_s=0.01, max_s=0.05, timeout_s=30)


@pytest.fixture
def conn(sandbox, connection: Connection) -> Connection:
    sandbox.state.cio.exports.delay_s = 0
    return connection


def _backfill(conn: Connection, root: Path, **options):
    return backfill_deliveries(conn, root, poll=FAST, **{"days": 30, "campaign_ids": [11, 16], "newsletter_ids": [],
                                                        **options})


def webhook(event_id: str, delivery_id: str, metric: str, timestamp: int, campaign_id: int = 11) -> QueuedEvent:
    body = {"event_id": event_id, "object_type": "email", "metric": metric, "timestamp": timestamp,
            "data": {"campaign_id": campaign_id, "delivery_id": delivery_id, "identifiers": {"cio_id": "c1"}}}
    return QueuedEvent(event_id, event_id, json.dumps(body).encode(), float(timestamp))


def test_backfill_writes_one_event_per_metric_each_delivery_reached_and_a_rerun_adds_nothing(conn, tmp_path):
    root = tmp_path / "events"
    result = _backfill(conn, root, until=UNTIL)
    assert result.start == UNTIL - 30 * 86400 and result.until == UNTIL
    assert result.deliveries > 0 and result.written == result.events_read > result.deliveries
    frame = read_event_log(root)
    assert len(frame) == result.written and frame["event_id"].is_unique
    assert frame["event_id"].str.startswith("export:").all()
    assert set(frame["campaign_id"]) == {11, 16}
    assert (frame["metric"] == "sent").sum() == result.deliveries  # every delivery in the export was sent
    assert frame["timestamp"].between(result.start, UNTIL - 1).all()
    # rows read like webhooks: job 3 finds each delivery with its source and times
    delivered = cohorts.deliveries(frame.assign(cluster=None, cluster_name=None, plan=None))
    assert len(delivered) == result.deliveries and delivered["source"].str.startswith("campaign:").all()
    manifest = json.loads((root / BACKFILL_MANIFEST).read_text())
    assert manifest["runs"][-1]["status"] == "done" and manifest["runs"][-1]["written"] == result.written

    again = _backfill(conn, root, until=UNTIL)
    assert again.written == 0 and len(read_event_log(root)) == result.written


def test_a_delivery_reported_by_a_webhook_and_an_export_counts_once(conn, tmp_path):
    probe = _backfill(conn, tmp_path / "probe", until=UNTIL)
    row = read_event_log(tmp_path / "probe").query("metric == 'delivered'").iloc[0]
    delivery, stamp = row["delivery_id"], int(row["timestamp"])

    root = tmp_path / "events"  # the receiver already logged that delivery, and its open twice
    EventLog(root).append([webhook("w1", delivery, "delivered", stamp), webhook("w2", delivery, "opened", stamp + 60),
                           webhook("w3", delivery, "opened", stamp + 90)])
    result = _backfill(conn, root, until=UNTIL)
    assert result.already_reported >= 1
    events = read_events(root, payload=True)
    mine = events[events["delivery_id"] == delivery]
    assert (mine["metric"] == "delivered").sum() == 1
    assert mine.loc[mine["metric"] == "delivered", "event_id"].tolist() == ["w1"]  # the webhook row wins
    assert (mine["metric"] == "opened").sum() == 2  # full-resolution repeats are the webhook's to report
    assert len(events) == probe.written + 3 - result.already_reported


def test_an_export_row_a_webhook_reports_later_is_left_out_of_reads_and_counts(tmp_path):
    root = tmp_path / "events"
    stamp = UNTIL - 3600
    (root).mkdir()
    (root / BACKFILL_MANIFEST).write_text(json.dumps({"runs": []}))
    backfilled = [QueuedEvent(f"export:d1:{m}", f"export:d1:{m}", json.dumps({
        "event_id": f"export:d1:{m}", "object_type": "email", "metric": m, "timestamp": stamp + i,
        "data": {"campaign_id": 11, "delivery_id": "d1"}}).encode(), 0.0) for i, m in enumerate(("sent", "delivered"))]
    EventLog(root).append(backfilled)
    counts = HourlyCounts(root)
    counts.update()
    assert counts.frame()["events"].sum() == 2
    EventLog(root).append([webhook("w-late", "d1", "delivered", stamp + 86400 - 1)])  # the next day, clock skew
    events = read_events(root)
    assert sorted(events["event_id"]) == ["export:d1:sent", "w-late"]
    update = counts.update()
    assert counts.frame().groupby("metric")["events"].sum().to_dict() == {"delivered": 1, "sent": 1}
    assert len(update.days_read) == 2  # the new day and the backfilled day beside it


def test_backfill_ends_where_the_receivers_log_begins(conn, tmp_path):
    root = tmp_path / "events"
    first = UNTIL - 2 * 86400
    EventLog(root).append([webhook("w1", "dx", "sent", first), webhook("w2", "dy", "sent", first + 500)])
    assert receiver_start(root) == first
    result = _backfill(conn, root)
    assert result.until == first and result.start == first - 30 * 86400
    backfilled = read_event_log(root).query("event_id.str.startswith('export:')", engine="python")
    assert (backfilled["timestamp"] < first).all()
    assert result.outside_period > 0  # metrics the deliveries reached after the receiver started


def test_webhooks_backfill_command_reports_what_it_added(make_sandbox, tmp_path, monkeypatch, capsys):
    server = make_sandbox(customers=300, app_rps=50)
    server.state.cio.exports.delay_s = 0
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CIO_MAVERA_MODE", "live")
    monkeypatch.setenv("CIO_MAVERA_DATA_DIR", str(tmp_path / "data"))
    assert main(["webhooks", "backfill", "--days", "10", "--until", END.isoformat(), "--campaign", "11"]) == 0
    err = capsys.readouterr().err
    assert "campaign 11:" in err and "backfilled " in err and "1 campaign(s) and 0 newsletter(s)" in err
    frame = read_event_log(tmp_path / "data" / "events")
    assert len(frame) > 0 and set(frame["campaign_id"]) == {11}


def test_newsletters_are_backfilled_too_so_churn_sees_every_send(conn, tmp_path):
    root = tmp_path / "events"
    result = backfill_deliveries(conn, root, days=60, until=UNTIL, campaign_ids=[], poll=FAST)
    assert result.newsletters and result.written > 0
    assert set(result.exports) == {f"newsletter {n}" for n in result.newsletters}
    frame = read_event_log(root)
    assert frame["newsletter_id"].notna().all() and frame["campaign_id"].isna().all()
    delivered = cohorts.deliveries(frame.assign(cluster=None, cluster_name=None, plan=None))
    assert delivered["source"].str.startswith("newsletter:").all()
