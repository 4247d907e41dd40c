"""Webhook intake never stops (issue 14, items 1-5): a signed body is always committed and answered,
what the parser cannot use is a dead letter (listed, counted, replayable), and the receiver fails closed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from cio_mavera import cli
from cio_mavera.customerio.webhooks import SANDBOX_WEBHOOK_SECRET, signed_headers
from cio_mavera.errors import ConfigError
from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.dead_letters import dead_letter_summary, replay_dead_letters
from cio_mavera.receiver.intake import (
    SANDBOX_REDIS_PREFIX,
    event_log_dir,
    intake_dir,
    intake_mode,
    intake_queue_url,
    receiver_secret,
)
from cio_mavera.receiver.queues import DeadLetter, EventRejected, SqliteQueue, default_queue_path
from cio_mavera.receiver.queues import sqlite as sqlite_queue
from cio_mavera.receiver.worker import drain_once, read_event_log
from cio_mavera.settings import Secret, Settings

SECRET = "whsec-hardening"
NOW = 1_800_000_000
ENV_NAMES = ("CIO_SITE_ID", "CIO_API_KEY", "CIO_APP_KEY", "MAVERA_API_KEY", "CIO_WEBHOOK_SECRET",
             "CIO_MAVERA_MODE", "CIO_MAVERA_REDIS_URL", "CIO_MAVERA_DATA_DIR")


def envelope(event_id: str = "e1", **fields) -> bytes:
    return json.dumps({"event_id": event_id, "object_type": "email", "metric": "delivered", "timestamp": NOW - 5,
                       "data": {"campaign_id": 3, "identifiers": {"id": "42", "cio_id": "c42"}}, **fields}).encode()


@pytest.fixture
def queue(tmp_path: Path):
    q = SqliteQueue(tmp_path / "q.sqlite3")
    yield q
    q.close()


async def _call(app, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        # Bounded: before the fix, a dead writer thread left requests waiting forever.
        return await asyncio.wait_for(client.request(method, path, content=body, headers=headers), 60)


def post(app, body: bytes, secret: str = SECRET) -> httpx.Response:
    return asyncio.run(_call(app, "POST", WEBHOOK_PATH, body, signed_headers(secret, body, NOW)))


def get(app, path: str) -> httpx.Response:
    return asyncio.run(_call(app, "GET", path))


def make_app(queue, secret: str = SECRET):
    return create_app(queue, secret, clock=lambda: float(NOW))


# -- item 1: one signed event cannot stop the SQLite receiver -------------------------------------


def test_event_id_with_a_lone_surrogate_is_dead_lettered_and_the_receiver_keeps_answering(queue):
    app = make_app(queue)
    poison = b'{"event_id":"\\ud800","object_type":"email","metric":"sent","timestamp":1799999990}'
    response = post(app, poison)
    assert response.status_code == 200
    assert response.json() == {"status": "dead_lettered", "reason": "surrogate"}
    for i in range(3):
        assert post(app, envelope(f"after{i}")).json()["status"] == "accepted"
    assert get(app, "/healthz").status_code == 200
    assert queue.event_ids() == {"after0", "after1", "after2"}
    assert [letter.payload for letter in queue.dead_letters()] == [poison]


def test_an_event_the_queue_refuses_is_dead_lettered_and_acknowledged(tmp_path):
    class Refusing(SqliteQueue):
        async def enqueue(self, event_id, payload, received_at):
            if event_id == "refused":
                raise EventRejected("the SQLite queue cannot store this event (test)")
            return await super().enqueue(event_id, payload, received_at)

    q = Refusing(tmp_path / "q.sqlite3")
    try:
        app = make_app(q)
        response = post(app, envelope("refused"))
        assert response.json() == {"status": "dead_lettered", "reason": "queue_refused"}
        assert post(app, envelope("fine")).json()["status"] == "accepted"
        [letter] = q.dead_letters()
        assert (letter.event_id, letter.reason, letter.stage) == ("refused", "queue_refused", "receiver")
        assert 'cio_mavera_webhooks_dead_lettered_total{reason="queue_refused"} 1' in get(app, "/metrics").text
    finally:
        q.close()


def test_healthz_says_unhealthy_while_the_writer_cannot_commit_and_ok_once_it_can(queue, monkeypatch):
    app = make_app(queue)

    def refuse(path, synchronous):
        raise OSError("disk gone")

    monkeypatch.setattr(sqlite_queue, "_connect", refuse)
    health = get(app, "/healthz")
    assert health.status_code == 503 and "disk gone" in health.json()["reason"]
    response = post(app, envelope())  # fails fast with 503 (Customer.io retries), never hangs
    assert response.status_code == 503
    assert 'cio_mavera_webhooks_queue_up{backend="sqlite"} 0' in get(app, "/metrics").text
    monkeypatch.undo()
    assert get(app, "/healthz").status_code == 200
    assert post(app, envelope()).json()["status"] == "accepted"
    assert queue.writer_restarts >= 1


# -- item 3: a correctly signed body is never refused ---------------------------------------------


def test_subscription_preferences_change_without_object_type_is_accepted_and_logged(queue, tmp_path):
    body = json.dumps({"event_id": "pref1", "metric": "cio_subscription_preferences_changed", "timestamp": NOW,
                       "data": {"customer_id": "7", "identifiers": {"id": "7"}, "email_address": None,
                                "content": '{"topics":{"topic_1":true}}'}}).encode()
    assert post(make_app(queue), body).json() == {"status": "accepted", "event_id": "pref1"}
    assert drain_once(queue, tmp_path / "events") == 1
    [row] = read_event_log(tmp_path / "events").to_dict("records")
    assert (row["object_type"], row["metric"], row["customer_id"]) == (
        "customer", "cio_subscription_preferences_changed", "7")


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json at all", "json"),
    (json.dumps({"object_type": "email", "metric": "sent"}).encode(), "missing_field"),
    (json.dumps({"event_id": "e", "object_type": "email", "metric": "sent", "data": [1]}).encode(), "shape"),
])
def test_every_unusable_signed_body_is_committed_as_a_dead_letter(queue, body, reason):
    response = post(make_app(queue), body)
    assert (response.status_code, response.json()["status"]) == (200, "dead_lettered")
    [letter] = queue.dead_letters()
    assert (letter.payload, letter.reason) == (body, reason)
    assert letter.dead_at > 0 and letter.detail


def test_only_unsigned_stale_oversized_or_badly_signed_requests_get_4xx(queue):
    app = create_app(queue, SECRET, clock=lambda: float(NOW), max_body_bytes=2000)
    body = b"{not json"
    statuses = [
        asyncio.run(_call(app, "POST", WEBHOOK_PATH, body, {})).status_code,
        asyncio.run(_call(app, "POST", WEBHOOK_PATH, body, signed_headers(SECRET, body, NOW - 3600))).status_code,
        asyncio.run(_call(app, "POST", WEBHOOK_PATH, body, signed_headers("forged", body, NOW))).status_code,
        post(app, b"{" + b" " * 3000 + b"}").status_code,
        post(app, body).status_code,
    ]
    assert statuses == [401, 401, 401, 413, 200]
    assert len(queue.dead_letters()) == 1


def _cli(monkeypatch, capsys, data_dir: Path, *argv: str) -> tuple[int, str]:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIO_MAVERA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CIO_MAVERA_MODE", "live")
    monkeypatch.setenv("CIO_WEBHOOK_SECRET", SECRET)
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_dead_letters_are_listed_and_replayed_once_the_parser_reads_them(tmp_path, monkeypatch, capsys):
    """A body an older parser refused (no object_type on a preferences change) becomes an event."""
    queue_path = default_queue_path(tmp_path)
    q = SqliteQueue(queue_path)
    learned = json.dumps({"event_id": "old1", "metric": "cio_subscription_preferences_changed",
                          "timestamp": NOW, "data": {"identifiers": {"id": "9"}}}).encode()
    unknown = b'{"event_id":"x","object_type":"email","metric":"sent","timestamp":"next tuesday"}'
    q.store_dead([DeadLetter.of(learned, "missing_field", "no object_type", stage="receiver", received_at=NOW),
                  DeadLetter.of(unknown, "timestamp", "not unix seconds", stage="receiver", received_at=NOW)])
    q.close()

    code, out = _cli(monkeypatch, capsys, tmp_path, "webhooks", "dead-letters", "list")
    assert code == 0 and "2 dead letter(s) waiting" in out and "missing_field" in out
    code, out = _cli(monkeypatch, capsys, tmp_path, "webhooks", "dead-letters", "list", "--json")
    assert {json.loads(line)["body"] for line in out.splitlines()} == {learned.decode(), unknown.decode()}
    code, out = _cli(monkeypatch, capsys, tmp_path, "webhooks", "dead-letters", "replay", "--dry-run")
    assert code == 0 and "would replay 1" in out
    code, out = _cli(monkeypatch, capsys, tmp_path, "webhooks", "dead-letters", "replay")
    assert code == 0 and "replayed 1 dead letter(s); 1 still fail" in out and "timestamp" in out
    code, out = _cli(monkeypatch, capsys, tmp_path, "webhooks", "work", "--once", "--no-research")
    assert code == 0 and "wrote 1 new events" in out and "1 dead letter(s) waiting" in out
    assert list(read_event_log(tmp_path / "events")["event_id"]) == ["old1"]
    summary = dead_letter_summary(queue_path)
    assert (summary["waiting"], summary["by_reason"], summary["replayed"]) == (1, {"timestamp": 1}, 1)


def test_replay_of_named_keys_reports_those_still_failing(queue):
    queue.store_dead([DeadLetter.of(b"{bad", "json", "x", stage="receiver", received_at=NOW)])
    key = queue.dead_letters()[0].key
    result = replay_dead_letters(queue, [key[:8]])
    assert result.replayed == [] and list(result.still_failing) == [key]
    assert replay_dead_letters(queue, ["ffff-no-such-key"]).still_failing == {}


def test_dead_letter_summary_of_a_queue_that_does_not_exist_is_empty(tmp_path):
    assert dead_letter_summary(tmp_path / "nowhere.sqlite3")["waiting"] == 0
    assert not (tmp_path / "nowhere.sqlite3").exists()


# -- item 4: depth and encodings -------------------------------------------------------------------


def _deep(depth: int) -> bytes:
    return (b'{"event_id":"deep","object_type":"email","metric":"sent","timestamp":1799999990,"data":{"x":'
            + b"[" * depth + b"]" * depth + b"}}")


@pytest.mark.parametrize(("body", "reason"), [
    (_deep(981), "depth"),
    (envelope().decode().encode("utf-16"), "encoding"),
    (envelope().decode().encode("utf-16-be"), "encoding"),
    (envelope().decode().encode("utf-32"), "encoding"),
    (envelope().decode().encode("utf-8-sig"), "encoding"),
    (envelope(extra=float("nan")), "number"),
    (envelope(extra=float("inf")), "number"),
    (envelope()[:-1] + b',"event_id":"e2"}', "duplicate_key"),
    (envelope("e\u0000"), "bad_field"),
    (envelope(data={"delivery_id": "d\u00001"}), "bad_field"),
])
def test_odd_depths_and_encodings_are_dead_lettered_not_stored_as_garbage(queue, tmp_path, body, reason):
    response = post(make_app(queue), body)
    assert response.json() == {"status": "dead_lettered", "reason": reason}
    assert queue.total() == 0
    assert drain_once(queue, tmp_path / "events") == 0


# -- item 5: fails closed --------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [{"app_key": Secret("k")}, {"site_id": "s", "api_key": Secret("k")}])
def test_auto_mode_with_live_keys_and_no_secret_refuses_to_verify_with_the_public_key(keys):
    settings = Settings(mode="auto", **keys)
    assert intake_mode(settings) == "live"
    with pytest.raises(ConfigError, match="CIO_WEBHOOK_SECRET"):
        receiver_secret(settings)
    assert receiver_secret(settings, insecure_skip_verify=True) is None


def test_serve_refuses_to_start_with_live_keys_and_no_secret(tmp_path, monkeypatch, capsys):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIO_MAVERA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CIO_APP_KEY", "live-app-key")
    assert cli.main(["webhooks", "serve", "--port", "1"]) == 2
    assert "CIO_WEBHOOK_SECRET" in capsys.readouterr().err
    assert not (tmp_path / "queue").exists()  # it stopped before opening anything


def test_a_live_receiver_refuses_events_signed_with_the_sandbox_key(queue):
    app = make_app(queue, secret="the-real-signing-key")
    assert post(app, envelope(), secret=SANDBOX_WEBHOOK_SECRET).status_code == 401
    assert queue.total() == 0 and queue.dead_letters() == []


def test_sandbox_intake_never_shares_the_live_data_directory(tmp_path):
    sandbox = Settings(mode="sandbox", data_dir=tmp_path)
    no_keys = Settings(mode="auto", data_dir=tmp_path)
    live = Settings(mode="auto", data_dir=tmp_path, webhook_secret=Secret("k"))
    assert receiver_secret(sandbox) == receiver_secret(no_keys) == Secret(SANDBOX_WEBHOOK_SECRET)
    assert intake_dir(sandbox) == intake_dir(no_keys) == tmp_path / "sandbox"
    assert intake_dir(live) == tmp_path and event_log_dir(live) == tmp_path / "events"
    assert intake_queue_url(sandbox) == tmp_path / "sandbox" / "queue" / "webhooks.sqlite3"
    assert intake_queue_url(live) == tmp_path / "queue" / "webhooks.sqlite3"
    redis = Settings(mode="sandbox", data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    assert intake_queue_url(redis) == f"redis://127.0.0.1:6379/0?prefix={SANDBOX_REDIS_PREFIX}"
    assert intake_queue_url(redis.with_overrides(mode="live")) == "redis://127.0.0.1:6379/0"


def test_sandbox_worker_writes_under_the_sandbox_subdirectory(tmp_path, monkeypatch, capsys):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIO_MAVERA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CIO_MAVERA_MODE", "sandbox")
    q = SqliteQueue(tmp_path / "sandbox" / "queue" / "webhooks.sqlite3")
    asyncio.run(q.enqueue("s1", envelope("s1"), 1.0))
    q.close()
    assert cli.main(["webhooks", "work", "--once"]) == 0
    assert list(read_event_log(tmp_path / "sandbox" / "events")["event_id"]) == ["s1"]
    assert not (tmp_path / "events").exists() and not (tmp_path / "queue").exists()
