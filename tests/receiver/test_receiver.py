"""The webhook receiver: verification, limits, validation, dedup, commit-before-2xx, metrics, SIGKILL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from receiver_server import free_port

from cio_mavera.customerio.webhooks import SANDBOX_WEBHOOK_SECRET, sign, signed_headers
from cio_mavera.errors import ConfigError
from cio_mavera.receiver.app import WEBHOOK_PATH, create_app
from cio_mavera.receiver.intake import receiver_secret
from cio_mavera.receiver.queues import QueueUnavailable, SqliteQueue
from cio_mavera.sandbox.webhooks import replay_async
from cio_mavera.settings import Secret, Settings

SECRET = "whsec-test-0123456789"
NOW = 1_800_000_000
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def envelope(event_id: str = "e1", **overrides) -> bytes:
    body = {"event_id": event_id, "object_type": "email", "metric": "delivered", "timestamp": NOW - 5,
            "data": {"campaign_id": 3, "action_id": 9, "delivery_id": "d1",
                     "identifiers": {"id": "42", "email": None, "cio_id": "c42"}}}
    body.update(overrides)
    return json.dumps(body).encode()


@pytest.fixture
def queue(tmp_path: Path):
    q = SqliteQueue(tmp_path / "q.sqlite3")
    yield q
    q.close()


def post(app, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            return await client.post(WEBHOOK_PATH, content=body, headers=headers)

    return asyncio.run(go())


def get(app, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            return await client.get(path)

    return asyncio.run(go())


def make_app(queue, **options):
    options.setdefault("clock", lambda: float(NOW))
    return create_app(queue, SECRET, **options)


def test_signed_event_is_accepted_and_stored(queue):
    body = envelope()
    response = post(make_app(queue), body, signed_headers(SECRET, body, NOW))
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "event_id": "e1"}
    [item] = queue.claim("t")
    assert item.payload == body and item.received_at == NOW


def test_duplicate_event_id_is_acknowledged_and_stored_once(queue):
    app = make_app(queue)
    body = envelope()
    assert post(app, body, signed_headers(SECRET, body, NOW)).json()["status"] == "accepted"
    second = post(app, body, signed_headers(SECRET, body, NOW))
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    assert queue.total() == 1


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "missing_signature"),
    ({"X-CIO-Timestamp": str(NOW)}, "missing_signature"),
    ({"X-CIO-Timestamp": "yesterday", "X-CIO-Signature": "ab"}, "bad_timestamp"),
    ({"X-CIO-Timestamp": str(NOW), "X-CIO-Signature": "0" * 64}, "bad_signature"),
    ({"X-CIO-Timestamp": str(NOW), "X-CIO-Signature": sign("wrong-secret", NOW, envelope())}, "bad_signature"),
    ({"X-CIO-Timestamp": str(NOW - 301), "X-CIO-Signature": sign(SECRET, NOW - 301, envelope())},
     "stale_timestamp"),
    ({"X-CIO-Timestamp": str(NOW + 301), "X-CIO-Signature": sign(SECRET, NOW + 301, envelope())},
     "stale_timestamp"),
])
def test_unauthenticated_requests_get_401_and_store_nothing(queue, headers, reason):
    response = post(make_app(queue), envelope(), headers)
    assert response.status_code == 401
    assert response.json()["error"] == reason
    assert queue.total() == 0


def test_tolerance_is_configurable(queue):
    body = envelope()
    headers = signed_headers(SECRET, body, NOW - 500)
    assert post(make_app(queue), body, headers).status_code == 401
    assert post(make_app(queue, tolerance_s=600), body, headers).status_code == 200


def test_signature_over_a_different_body_is_rejected(queue):
    headers = signed_headers(SECRET, envelope("original"), NOW)
    assert post(make_app(queue), envelope("tampered"), headers).status_code == 401
    assert queue.total() == 0


def test_body_over_the_cap_gets_413_from_content_length(queue):
    body = envelope(data={"content": "x" * 5000})
    response = post(make_app(queue, max_body_bytes=1000), body, signed_headers(SECRET, body, NOW))
    assert response.status_code == 413
    assert queue.total() == 0


def test_streamed_body_over_the_cap_gets_413_without_content_length(queue):
    app = make_app(queue, max_body_bytes=1000)
    body = envelope(data={"content": "x" * 5000})
    headers = signed_headers(SECRET, body, NOW)
    chunks = [body[i:i + 512] for i in range(0, len(body), 512)]
    received: list[int] = []
    sent: list[dict] = []

    async def receive() -> dict:
        chunk = chunks.pop(0)
        received.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": WEBHOOK_PATH, "raw_path": WEBHOOK_PATH.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "app": app,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app.router.routes[0].app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert sum(received) <= 1000 + 512  # it stopped reading once over the cap
    assert queue.total() == 0


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "json"),
    (b"[]", "shape"),
    (json.dumps({"object_type": "email", "metric": "sent"}).encode(), "missing_field"),
    (json.dumps({"event_id": "e", "metric": "sent"}).encode(), "missing_field"),
    (json.dumps({"event_id": "e", "object_type": "email"}).encode(), "missing_field"),
])
def test_signed_bodies_the_parser_cannot_use_are_dead_lettered_and_acknowledged(queue, body, reason):
    app = make_app(queue)
    response = post(app, body, signed_headers(SECRET, body, NOW))
    assert response.status_code == 200
    assert response.json() == {"status": "dead_lettered", "reason": reason}
    assert post(app, body, signed_headers(SECRET, body, NOW)).status_code == 200  # Customer.io's retry
    assert queue.total() == 0
    [letter] = queue.dead_letters()
    assert (letter.payload, letter.reason, letter.stage, letter.received_at) == (body, reason, "receiver", NOW)


def test_unknown_object_types_and_metrics_are_accepted_and_kept(queue):
    body = envelope(object_type="hologram", metric="beamed", novel={"field": 1})
    assert post(make_app(queue), body, signed_headers(SECRET, body, NOW)).status_code == 200
    [item] = queue.claim("t")
    assert json.loads(item.payload)["novel"] == {"field": 1}


def test_2xx_is_sent_only_after_the_queue_commits():
    order: list[str] = []

    class SlowQueue:
        backend = "slow"

        async def enqueue(self, event_id, payload, received_at):
            await asyncio.sleep(0.05)
            order.append("committed")
            return True

        async def aclose(self):
            pass

    app = make_app(SlowQueue())
    body = envelope()

    async def go() -> None:
        async def send_spy(message):
            if message["type"] == "http.response.start":
                order.append(f"response {message['status']}")

        scope = {"type": "http", "method": "POST", "path": WEBHOOK_PATH, "headers": [
            (k.lower().encode(), v.encode()) for k, v in signed_headers(SECRET, body, NOW).items()]}

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        await app.router.routes[0].app(scope, receive, send_spy)

    asyncio.run(go())
    assert order == ["committed", "response 200"]


def test_queue_failure_answers_503_so_customerio_retries():
    class BrokenQueue:
        backend = "broken"

        async def enqueue(self, event_id, payload, received_at):
            raise QueueUnavailable("disk full")

        async def enqueue_dead(self, letter):
            raise QueueUnavailable("disk full")

        async def ping(self):
            raise QueueUnavailable("disk full")

        async def aclose(self):
            pass

    app = make_app(BrokenQueue())
    for body in (envelope(), b"{not json"):  # an event, and a body that would be a dead letter
        response = post(app, body, signed_headers(SECRET, body, NOW))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
    assert get(app, "/healthz").status_code == 503
    assert 'cio_mavera_webhooks_queue_up{backend="broken"} 0' in get(app, "/metrics").text


def test_verification_off_accepts_unsigned_requests(queue):
    app = create_app(queue, None, verify=False)
    assert post(app, envelope(), {}).status_code == 200


def test_create_app_without_a_secret_refuses_to_start(queue):
    with pytest.raises(ConfigError, match="CIO_WEBHOOK_SECRET"):
        create_app(queue, None)


def test_live_mode_without_secret_refuses_unless_told_to_skip_verification():
    live = Settings(mode="live")
    with pytest.raises(ConfigError, match="CIO_WEBHOOK_SECRET"):
        receiver_secret(live, insecure_skip_verify=False)
    assert receiver_secret(live, insecure_skip_verify=True) is None
    assert receiver_secret(Settings(mode="auto"), False) == Secret(SANDBOX_WEBHOOK_SECRET)
    assert receiver_secret(Settings(mode="auto", webhook_secret=Secret("k")), False) == Secret("k")


def test_metrics_count_received_accepted_duplicates_rejections_and_depth(queue):
    app = make_app(queue)
    body = envelope()
    post(app, body, signed_headers(SECRET, body, NOW))
    post(app, body, signed_headers(SECRET, body, NOW))
    post(app, body, {"X-CIO-Timestamp": str(NOW), "X-CIO-Signature": "00"})
    post(app, b"{}", signed_headers(SECRET, b"{}", NOW))
    text = get(app, "/metrics").text
    assert "cio_mavera_webhooks_received_total 4" in text
    assert "cio_mavera_webhooks_accepted_total 1" in text
    assert "cio_mavera_webhooks_duplicates_total 1" in text
    assert 'cio_mavera_webhooks_rejected_total{reason="bad_signature"} 1' in text
    assert 'cio_mavera_webhooks_dead_lettered_total{reason="missing_field"} 1' in text
    assert 'cio_mavera_webhooks_dead_letters{backend="sqlite"} 1' in text
    assert 'cio_mavera_webhooks_queue_depth{backend="sqlite"} 1' in text
    assert 'cio_mavera_webhooks_queue_up{backend="sqlite"} 1' in text
    assert get(app, "/healthz").json() == {"status": "ok", "queue": "sqlite", "depth": 1, "dead_letters": 1,
                                           "verify": True}


def test_secret_and_signatures_never_reach_the_logs(queue, caplog):
    caplog.set_level(logging.DEBUG)
    app = make_app(queue)
    body = envelope()
    good = signed_headers(SECRET, body, NOW)
    post(app, body, good)
    post(app, body, {"X-CIO-Timestamp": str(NOW), "X-CIO-Signature": "f" * 64})
    assert SECRET not in caplog.text
    assert good["X-CIO-Signature"] not in caplog.text and "f" * 64 not in caplog.text


def _wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60  # imports alone take ~10 s on a loaded 2-core machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"receiver exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("receiver did not become healthy")


@pytest.mark.slow
def test_sigkill_during_replay_loses_no_acknowledged_event(tmp_path):
    """Every event that got a 2xx is in the queue after the receiver is SIGKILLed mid-stream."""
    port = free_port()
    queue_path = tmp_path / "q.sqlite3"
    env = {**os.environ, "CIO_MAVERA_DATA_DIR": str(tmp_path), "CIO_WEBHOOK_SECRET": SECRET,
           "CIO_MAVERA_MODE": "auto"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cio_mavera.cli", "webhooks", "serve", "--port", str(port),
         "--queue", f"sqlite:///{queue_path}"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        acked: set[str] = set()
        answered = 0

        def on_response(event_id, status):
            nonlocal answered
            answered += 1
            if isinstance(status, int) and 200 <= status < 300:
                acked.add(event_id)
            if answered == 400:
                os.kill(process.pid, signal.SIGKILL)

        events = [{"event_id": f"k{i}", "object_type": "email", "metric": "sent", "timestamp": NOW,
                   "data": {}} for i in range(1500)]
        summary = asyncio.run(replay_async(f"{url}{WEBHOOK_PATH}", events, SECRET, concurrency=16,
                                           timeout_s=5, on_response=on_response))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert summary["failed"] > 0  # the kill really happened mid-stream
    assert len(acked) >= 300
    stored = SqliteQueue(queue_path)
    try:
        missing = acked - stored.event_ids()
    finally:
        stored.close()
    assert not missing, f"{len(missing)} acknowledged events were lost"


@pytest.mark.redis
def test_two_receivers_sharing_redis_store_each_event_once():
    from redis_server import MISSING_REASON, RedisServer, redis_available

    from cio_mavera.receiver.queues import RedisQueue
    from cio_mavera.receiver.server import BackgroundReceiver
    from cio_mavera.sandbox.webhooks import replay

    if not redis_available():
        pytest.skip(MISSING_REASON)
    events = [{"event_id": f"r{i % 150}", "object_type": "email", "metric": "sent", "data": {}}
              for i in range(200)]  # 50 resends, some of them landing on the other receiver
    with RedisServer() as server:
        queues = [RedisQueue(server.url, prefix="two"), RedisQueue(server.url, prefix="two")]
        try:
            with BackgroundReceiver(create_app(queues[0], SECRET)) as a, \
                    BackgroundReceiver(create_app(queues[1], SECRET)) as b:
                first = replay(a.url + WEBHOOK_PATH, events[::2], SECRET, concurrency=4)
                second = replay(b.url + WEBHOOK_PATH, events[1::2], SECRET, concurrency=4)
            assert first["acknowledged"] + second["acknowledged"] == 200
            assert first["duplicates_acknowledged"] + second["duplicates_acknowledged"] == 50
            assert queues[0].event_ids() == {f"r{i}" for i in range(150)}
            assert queues[0].depth() == 150
        finally:
            for q in queues:
                q.close()
