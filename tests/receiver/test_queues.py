"""Both queue backends behind one protocol: durable dedup enqueue, claim/ack, redelivery, depth."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_server import MISSING_REASON, RedisServer, redis_available

from cio_mavera.errors import ConfigError
from cio_mavera.receiver.queues import (
    DeadLetter,
    EventRejected,
    QueueUnavailable,
    RedisQueue,
    SqliteQueue,
    WebhookQueue,
    default_queue_path,
    open_queue,
)
from cio_mavera.receiver.queues import sqlite as sqlite_queue

VISIBILITY_S = 0.3


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip(MISSING_REASON)
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def queue(request, tmp_path: Path) -> Iterator[WebhookQueue]:
    if request.param == "sqlite":
        q: WebhookQueue = open_queue(f"sqlite:///{tmp_path}/q.sqlite3?visibility_timeout={VISIBILITY_S}")
    else:
        server = request.getfixturevalue("redis_server")
        server.flush()
        q = open_queue(f"{server.url}?claim_idle_ms={int(VISIBILITY_S * 1000)}&prefix=t")
    yield q
    asyncio.run(q.aclose())
    q.close()


def enqueue(q: WebhookQueue, event_id: str, payload: bytes = b"{}") -> bool:
    return asyncio.run(q.enqueue(event_id, payload, 1700000000.5))


def test_enqueue_returns_false_for_a_duplicate_and_stores_once(queue):
    assert enqueue(queue, "e1", b'{"a":1}') is True
    assert enqueue(queue, "e1", b'{"a":2}') is False
    assert queue.depth() == 1
    [item] = queue.claim("w1", max_items=10)
    assert (item.event_id, item.payload, item.received_at) == ("e1", b'{"a":1}', 1700000000.5)


def test_claim_returns_events_in_arrival_order_and_ack_removes_them(queue):
    for i in range(5):
        enqueue(queue, f"e{i}")
    first = queue.claim("w1", max_items=3)
    assert [e.event_id for e in first] == ["e0", "e1", "e2"]
    assert not any(e.redelivered for e in first)
    assert [e.event_id for e in queue.claim("w1", max_items=10)] == ["e3", "e4"]
    assert queue.ack([e.id for e in first]) == 3
    assert queue.depth() == 2
    assert queue.ack([]) == 0


def test_an_acked_event_id_still_counts_as_duplicate(queue):
    enqueue(queue, "e1")
    queue.ack([e.id for e in queue.claim("w1")])
    assert enqueue(queue, "e1") is False
    assert queue.depth() == 0


def test_claimed_events_are_not_handed_to_another_consumer_before_the_timeout(queue):
    enqueue(queue, "e1")
    assert len(queue.claim("w1")) == 1
    assert queue.claim("w2") == []


def test_events_a_dead_consumer_never_acked_are_redelivered(queue):
    for i in range(3):
        enqueue(queue, f"e{i}")
    taken = queue.claim("dead-worker", max_items=2)
    assert len(taken) == 2
    time.sleep(VISIBILITY_S + 0.2)
    again = queue.claim("w2", max_items=10)
    by_id = {e.event_id: e for e in again}
    assert set(by_id) == {"e0", "e1", "e2"}
    assert by_id["e0"].redelivered and by_id["e1"].redelivered and not by_id["e2"].redelivered
    assert queue.ack([e.id for e in again]) == 3
    assert queue.depth() == 0


def test_claim_with_block_waits_and_returns_empty_when_nothing_arrives(queue):
    assert queue.claim("w1", max_items=5, block_ms=100) == []


def test_concurrent_enqueues_store_each_event_id_exactly_once(queue):
    ids = [f"e{i % 400}" for i in range(500)]  # 100 duplicates among 500 requests

    async def many() -> list[bool]:
        return await asyncio.gather(*(queue.enqueue(i, b"{}", 1.0) for i in ids))

    results = asyncio.run(many())
    assert sum(results) == 400
    assert queue.depth() == 400


def test_sqlite_group_commit_batches_concurrent_requests(tmp_path):
    q = SqliteQueue(tmp_path / "q.sqlite3")

    async def many() -> None:
        await asyncio.gather(*(q.enqueue(f"e{i}", b"{}", 1.0) for i in range(300)))

    asyncio.run(many())
    assert q.total() == 300
    assert q.commits < 300  # several requests shared each commit
    q.close()


def test_sqlite_enqueue_is_durable_when_it_returns(tmp_path):
    path = tmp_path / "q.sqlite3"
    q = SqliteQueue(path)
    enqueue(q, "e1")
    # A second connection (another process would see the same) reads the committed row.
    other = SqliteQueue(path)
    assert other.event_ids() == {"e1"}
    other.close()
    q.close()


def test_sqlite_prune_forgets_old_acked_rows_only(tmp_path):
    q = SqliteQueue(tmp_path / "q.sqlite3")
    enqueue(q, "done")
    enqueue(q, "waiting")
    q.ack(["done"])
    assert q.prune(older_than_s=-1) == 1
    assert q.event_ids() == {"waiting"}
    q.close()


@pytest.mark.redis
def test_redis_enqueue_marks_seen_with_ttl_and_appends_in_one_step(redis_server):
    redis_server.flush()
    q = RedisQueue(redis_server.url, prefix="ttl", dedup_ttl_s=1234)
    enqueue(q, "e1")
    client = redis.Redis.from_url(redis_server.url)
    assert 0 < client.ttl(q.seen_key("e1")) <= 1234
    assert client.xlen(q.stream_key) == 1
    client.close()
    q.close()


@pytest.mark.redis
def test_redis_consumer_group_is_shared_by_two_queue_handles(redis_server):
    redis_server.flush()
    a = RedisQueue(redis_server.url, prefix="shared")
    b = RedisQueue(redis_server.url, prefix="shared")  # a second receiver/worker process
    for i in range(4):
        enqueue(a, f"e{i}")
    assert enqueue(b, "e0") is False
    got = a.claim("wa", max_items=2) + b.claim("wb", max_items=10)
    assert sorted(e.event_id for e in got) == ["e0", "e1", "e2", "e3"]
    a.close()
    b.close()


@pytest.mark.redis
def test_redis_queue_unreachable_raises_actionable_error():
    with pytest.raises(QueueUnavailable, match="cannot reach"):
        RedisQueue("redis://:hunter2@127.0.0.1:1/0")
    try:
        RedisQueue("redis://:hunter2@127.0.0.1:1/0")
    except QueueUnavailable as exc:
        assert "hunter2" not in str(exc)


def test_open_queue_parses_urls_and_paths(tmp_path):
    a = open_queue(f"sqlite:///{tmp_path}/a.sqlite3")
    b = open_queue(tmp_path / "b.sqlite3")
    c = open_queue(None, data_dir=tmp_path)
    assert isinstance(a, SqliteQueue) and a.path == tmp_path / "a.sqlite3"
    assert isinstance(b, SqliteQueue) and b.path == tmp_path / "b.sqlite3"
    assert isinstance(c, SqliteQueue) and c.path == default_queue_path(tmp_path)
    assert c.path == tmp_path / "queue" / "webhooks.sqlite3"
    for q in (a, b, c):
        q.close()


@pytest.mark.parametrize("url", ["ftp://x/y", "sqlite:///tmp/x?visibility_timeout=abc",
                                 "sqlite:///tmp/x?synchronous=off"])
def test_open_queue_rejects_bad_urls_with_config_error(url):
    with pytest.raises(ConfigError):
        open_queue(url)


# -- dead letters, in both backends ----------------------------------------------------------------


def letter(payload: bytes, reason: str = "json", stage: str = "receiver", event_id: str | None = None) -> DeadLetter:
    return DeadLetter.of(payload, reason, f"detail of {reason}", stage=stage, received_at=1700000000.5,
                         event_id=event_id, now=1700000001.0)


def test_dead_letters_are_stored_once_per_body_and_listed_oldest_first(queue):
    assert asyncio.run(queue.enqueue_dead(letter(b"{bad"))) is True
    assert asyncio.run(queue.enqueue_dead(letter(b"{bad"))) is False  # Customer.io's retry of that body
    assert queue.store_dead([letter(b"[]", "shape", "worker", "e9"), letter(b"{bad")]) == 1
    assert queue.dead_count() == 2
    first, second = queue.dead_letters()
    assert (first.payload, first.reason, first.stage, first.received_at) == (b"{bad", "json", "receiver",
                                                                             1700000000.5)
    assert (second.payload, second.stage, second.event_id) == (b"[]", "worker", "e9")
    assert queue.depth() == 0  # dead letters are not events


def test_replaying_a_dead_letter_queues_it_even_when_its_event_id_was_seen(queue):
    body = b'{"event_id":"e1","metric":"cio_subscription_preferences_changed"}'
    enqueue(queue, "e1", body)
    queue.ack([e.id for e in queue.claim("w1")])  # stored, then the worker dead-lettered it
    queue.store_dead([letter(body, "missing_field", "worker", "e1")])
    assert queue.replay_dead(letter(body).key, "e1") is True
    assert queue.replay_dead(letter(body).key, "e1") is False  # no longer waiting
    [item] = queue.claim("w2")
    assert (item.event_id, item.payload, item.received_at) == ("e1", body, 1700000000.5)
    assert queue.dead_count() == 0
    [done] = queue.dead_letters(replayed=True)
    assert done.replayed_at is not None and done.reason == "missing_field"


def test_a_replayed_body_that_fails_again_waits_again(queue):
    queue.store_dead([letter(b"{x}", "json")])
    queue.replay_dead(letter(b"{x}").key, "x1")
    assert queue.dead_count() == 0
    assert queue.store_dead([letter(b"{x}", "not_storable", "worker")]) == 1
    [again] = queue.dead_letters()
    assert again.reason == "not_storable" and again.replayed_at is None


def test_ping_answers_when_the_queue_can_commit(queue):
    asyncio.run(queue.ping())


def test_an_event_id_the_backend_cannot_encode_is_rejected_alone(queue):
    with pytest.raises(EventRejected):
        enqueue(queue, "\ud800")
    assert enqueue(queue, "after") is True
    assert [e.event_id for e in queue.claim("w1")] == ["after"]


# -- the SQLite writer never dies silently (issue 14, item 1) -------------------------------------


def test_a_row_sqlite_refuses_fails_that_request_only_and_the_writer_keeps_writing(tmp_path):
    q = SqliteQueue(tmp_path / "q.sqlite3")

    async def batch() -> list:
        return await asyncio.wait_for(asyncio.gather(
            q.enqueue("ok1", b"{}", 1.0), q.enqueue("\ud800", b"{}", 1.0), q.enqueue("ok2", b"{}", 1.0),
            return_exceptions=True), 60)

    first, refused, second = asyncio.run(batch())
    assert (first, second) == (True, True)
    assert isinstance(refused, EventRejected)
    assert q._writer is not None and q._writer.is_alive()
    assert enqueue(q, "ok3") is True
    assert q.event_ids() == {"ok1", "ok2", "ok3"}
    q.close()


def test_an_unexpected_error_fails_its_batch_and_the_writer_lives_on(tmp_path, monkeypatch, caplog):
    q = SqliteQueue(tmp_path / "q.sqlite3")
    real = SqliteQueue._commit_batch
    calls = []

    def flaky(self, conn, batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("a bug in the writer")
        return real(self, conn, batch)

    monkeypatch.setattr(SqliteQueue, "_commit_batch", flaky)
    with pytest.raises(QueueUnavailable):
        asyncio.run(asyncio.wait_for(q.enqueue("lost", b"{}", 1.0), 60))
    writer = q._writer
    assert enqueue(q, "kept") is True
    assert q._writer is writer and writer.is_alive()  # the same thread, never restarted
    assert "could not commit a batch" in caplog.text
    assert q.event_ids() == {"kept"}
    q.close()


def test_a_writer_that_cannot_start_fails_requests_at_once_and_the_next_request_restarts_it(tmp_path, monkeypatch):
    q = SqliteQueue(tmp_path / "q.sqlite3")

    def refuse(path, synchronous):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite_queue, "_connect", refuse)
    for _ in range(2):
        with pytest.raises(QueueUnavailable, match="unable to open"):
            asyncio.run(asyncio.wait_for(q.enqueue("e1", b"{}", 1.0), 60))
        with pytest.raises(QueueUnavailable):
            asyncio.run(asyncio.wait_for(q.ping(), 60))
    monkeypatch.undo()
    assert enqueue(q, "e1") is True
    asyncio.run(q.ping())
    assert q.writer_restarts >= 1 and q.last_error is None
    q.close()
