"""Redis Streams webhook queue: many receivers and workers share one stream and consumer group.

Enqueue is one Lua script (atomic on the server): `SET seen:<event_id> NX EX ttl` and, only when that
key is new, `XADD` to the stream, so a crash can never leave an event marked seen but not queued.
Workers read with XREADGROUP; entries a dead worker left pending longer than `claim_idle_ms` are taken
over with XAUTOCLAIM. Acked entries are deleted from the stream, so XLEN is the queue depth.

Dead letters live in two hashes beside the stream (`dead`: waiting, `dead:replayed`), keyed by the
body's SHA-256; storing one and replaying one (XADD + SET seen + moving the record) are Lua scripts,
so each is atomic.

Durability on return is Redis's: run it with `appendonly yes` (`appendfsync always` to survive power
loss; `everysec` loses at most a second). Redis 7.2's WAITAOF could make this per-call; Debian 12
ships 7.0, so it is not used.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis

from .base import (
    DEFAULT_DEDUP_TTL_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    DeadLetter,
    EventRejected,
    QueuedEvent,
    QueueUnavailable,
)

_ENQUEUE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[2], '*', 'event_id', ARGV[2], 'payload', ARGV[3], 'received_at', ARGV[4])
  return 1
end
return 0
"""
# KEYS: waiting hash, replayed hash; ARGV: key, record. A body already waiting is stored once; one
# that was replayed and failed again waits again.
_DEAD_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS: waiting hash, replayed hash, seen key, stream; ARGV: key, ttl, event_id, received_at, replayed_at
_REPLAY_LUA = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then
  return 0
end
local letter = cjson.decode(record)
letter['replayed_at'] = tonumber(ARGV[5])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
redis.call('XADD', KEYS[4], '*', 'event_id', ARGV[3], 'payload', ARGV[6], 'received_at', ARGV[4])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(letter))
return 1
"""


def _record(letter: DeadLetter) -> str:
    return json.dumps({
        "payload": base64.b64encode(letter.payload).decode("ascii"), "reason": letter.reason,
        "detail": letter.detail, "stage": letter.stage, "received_at": letter.received_at,
        "dead_at": letter.dead_at, "event_id": letter.event_id, "replayed_at": letter.replayed_at,
    })


def _letter(key: bytes | str, record: bytes | str) -> DeadLetter:
    fields = json.loads(record)
    replayed_at = fields.get("replayed_at")
    return DeadLetter(
        key=key.decode() if isinstance(key, bytes) else key,
        payload=base64.b64decode(fields["payload"]),
        reason=fields["reason"], detail=fields["detail"], stage=fields["stage"],
        received_at=float(fields["received_at"]), dead_at=float(fields["dead_at"]),
        event_id=fields.get("event_id"),
        replayed_at=float(replayed_at) if isinstance(replayed_at, int | float) else None,
    )


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:****@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisQueue:
    """A queue on Redis Streams with a consumer group, deduplicated by `event_id` keys with a TTL."""

    backend = "redis"

    def __init__(self, url: str, *, prefix: str = "cio-mavera:webhooks", group: str = "workers",
                 dedup_ttl_s: int = DEFAULT_DEDUP_TTL_S,
                 claim_idle_ms: int = int(DEFAULT_VISIBILITY_TIMEOUT_S * 1000)) -> None:
        self.url = url
        self.group = group
        self.dedup_ttl_s = int(dedup_ttl_s)
        self.claim_idle_ms = int(claim_idle_ms)
        # One hash tag keeps the stream and the seen-keys in one slot, so the script works on a cluster.
        self._tag = "{" + prefix + "}"
        self.stream_key = f"{self._tag}:stream"
        self.dead_key = f"{self._tag}:dead"
        self.replayed_key = f"{self._tag}:dead:replayed"
        self._sync = redis.Redis.from_url(url)
        self._async: dict[asyncio.AbstractEventLoop, tuple[aioredis.Redis, object]] = {}
        self._cursor = "0-0"
        try:
            self._sync.xgroup_create(self.stream_key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise QueueUnavailable(f"cannot create consumer group on {self.describe()}: {exc}") from None
        except redis.RedisError as exc:
            raise QueueUnavailable(f"cannot reach the Redis queue at {self.describe()}: {exc}") from None

    def describe(self) -> str:
        return f"{_redact(self.url)} (stream {self.stream_key}, group {self.group})"

    def seen_key(self, event_id: str) -> str:
        return f"{self._tag}:seen:{event_id}"

    # -- producer side ---------------------------------------------------------------------------

    def _client(self) -> tuple[aioredis.Redis, object, object]:
        loop = asyncio.get_running_loop()
        found = self._async.get(loop)
        if found is None:
            client = aioredis.Redis.from_url(self.url)
            found = (client, client.register_script(_ENQUEUE_LUA), client.register_script(_DEAD_LUA))
            self._async[loop] = found
        return found

    async def enqueue(self, event_id: str, payload: bytes, received_at: float) -> bool:
        """Mark the id seen and append to the stream atomically; False for a duplicate."""
        _client, script, _dead = self._client()
        try:
            added = await script(  # type: ignore[operator]
                keys=[self.seen_key(event_id), self.stream_key],
                args=[self.dedup_ttl_s, event_id, payload, repr(received_at)],
            )
        except (UnicodeEncodeError, redis.DataError) as exc:  # e.g. an id redis-py cannot encode
            raise EventRejected(f"the Redis queue cannot store this event ({type(exc).__name__})") from None
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not enqueue to {self.describe()}: {type(exc).__name__}") from None
        return bool(added)

    async def enqueue_dead(self, letter: DeadLetter) -> bool:
        """Store the dead letter (atomically, once per body); False when it is already waiting."""
        _client, _enqueue, script = self._client()
        try:
            added = await script(keys=[self.dead_key, self.replayed_key],  # type: ignore[operator]
                                 args=[letter.key, _record(letter)])
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not store a dead letter in {self.describe()}: "
                                   f"{type(exc).__name__}") from None
        return bool(added)

    async def ping(self) -> None:
        """PING on the receiver's connection."""
        client = self._client()[0]
        try:
            await client.ping()
        except redis.RedisError as exc:
            raise QueueUnavailable(f"{self.describe()} does not answer: {type(exc).__name__}") from None

    # -- consumer side ---------------------------------------------------------------------------

    @staticmethod
    def _event(entry_id: bytes, fields: dict, redelivered: bool) -> QueuedEvent:
        return QueuedEvent(
            id=entry_id.decode(),
            event_id=fields[b"event_id"].decode(),
            payload=bytes(fields[b"payload"]),
            received_at=float(fields[b"received_at"]),
            redelivered=redelivered,
        )

    def claim(self, consumer: str, max_items: int = 100, block_ms: int = 0) -> list[QueuedEvent]:
        """Take over idle pending entries first (XAUTOCLAIM), then read new ones (XREADGROUP)."""
        out: list[QueuedEvent] = []
        try:
            cursor, entries, *_deleted = self._sync.xautoclaim(
                self.stream_key, self.group, consumer, min_idle_time=self.claim_idle_ms,
                start_id=self._cursor, count=max_items,
            )
            self._cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
            out.extend(self._event(eid, fields, True) for eid, fields in entries if fields)
            if len(out) < max_items:
                kwargs = {"block": block_ms} if block_ms > 0 and not out else {}
                replies = self._sync.xreadgroup(
                    self.group, consumer, {self.stream_key: ">"}, count=max_items - len(out), **kwargs
                )
                for _stream, stream_entries in replies or []:
                    out.extend(self._event(eid, fields, False) for eid, fields in stream_entries if fields)
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not claim from {self.describe()}: {type(exc).__name__}") from None
        return out

    def ack(self, ids: Iterable[str]) -> int:
        """XACK and XDEL the entries (the seen-keys keep deduplicating until their TTL)."""
        ids = list(ids)
        if not ids:
            return 0
        try:
            pipe = self._sync.pipeline(transaction=True)
            pipe.xack(self.stream_key, self.group, *ids)
            pipe.xdel(self.stream_key, *ids)
            acked, _deleted = pipe.execute()
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not ack in {self.describe()}: {type(exc).__name__}") from None
        return int(acked)

    def depth(self) -> int:
        try:
            return int(self._sync.xlen(self.stream_key))
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not read depth of {self.describe()}: {type(exc).__name__}") from None

    # -- dead letters ----------------------------------------------------------------------------

    def store_dead(self, letters: Iterable[DeadLetter]) -> int:
        """Store the worker's dead letters; returns how many were new."""
        letters = list(letters)
        if not letters:
            return 0
        try:
            script = self._sync.register_script(_DEAD_LUA)
            pipe = self._sync.pipeline(transaction=True)
            for letter in letters:
                script(keys=[self.dead_key, self.replayed_key], args=[letter.key, _record(letter)], client=pipe)
            return sum(int(added) for added in pipe.execute())
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not store dead letters in {self.describe()}: "
                                   f"{type(exc).__name__}") from None

    def dead_letters(self, *, replayed: bool = False) -> list[DeadLetter]:
        """Dead letters waiting (or already replayed), oldest first."""
        try:
            found = self._sync.hgetall(self.replayed_key if replayed else self.dead_key)
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not read dead letters in {self.describe()}: "
                                   f"{type(exc).__name__}") from None
        return sorted((_letter(key, record) for key, record in found.items()), key=lambda d: (d.dead_at, d.key))

    def dead_count(self) -> int:
        try:
            return int(self._sync.hlen(self.dead_key))
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not count dead letters in {self.describe()}: "
                                   f"{type(exc).__name__}") from None

    def replay_dead(self, key: str, event_id: str) -> bool:
        """XADD the dead letter's body as `event_id`, mark the id seen, and move the record to replayed."""
        try:
            record = self._sync.hget(self.dead_key, key)
            if record is None:
                return False
            payload = base64.b64decode(json.loads(record)["payload"])
            received_at = json.loads(record)["received_at"]
            script = self._sync.register_script(_REPLAY_LUA)
            done = script(keys=[self.dead_key, self.replayed_key, self.seen_key(event_id), self.stream_key],
                          args=[key, self.dedup_ttl_s, event_id, repr(float(received_at)), repr(time.time()),
                                payload])
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not replay a dead letter in {self.describe()}: "
                                   f"{type(exc).__name__}") from None
        return bool(done)

    def pending(self) -> int:
        """Entries delivered to some consumer and not acked yet."""
        return int(self._sync.xpending(self.stream_key, self.group)["pending"])

    def event_ids(self) -> set[str]:
        """The `event_id` of every entry still in the stream (tests and the bench)."""
        ids: set[str] = set()
        last = "-"
        while True:
            batch = self._sync.xrange(self.stream_key, min=last, max="+", count=1000)
            if last != "-" and batch:
                batch = batch[1:]
            if not batch:
                return ids
            ids.update(fields[b"event_id"].decode() for _eid, fields in batch)
            last = batch[-1][0].decode()

    # -- lifecycle -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        found = self._async.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()

    def close(self) -> None:
        self._sync.close()
