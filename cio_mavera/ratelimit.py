"""Client-side rate limiters: sliding windows shared by threads, processes or machines.

The App API allows 10 requests per second per workspace, and every process of the kit on a machine
draws on that one budget. `FileRateLimiter` keeps the send times of the last window in a small file
under an exclusive `flock`, so concurrent pulls together stay under the limit; `RedisRateLimiter`
does the same in Redis for several machines. Both are sliding-window logs rather than token buckets:
a bucket of 10 refilling at 10/s can put 20 requests into one second, which a strict server answers
with 429.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis

# A little slack on the window absorbs jitter between our clock and the server's arrival times.
DEFAULT_MARGIN_S = 0.05


class RateLimiter(Protocol):
    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""


class NoLimit:
    """A limiter that never waits (used where an API has no documented limit)."""

    def acquire(self) -> float:
        return 0.0


class SlidingWindowLimiter:
    """At most `limit` acquisitions in any `window_s` seconds, within one process.

    A send is granted at the last `clock()` reading its `acquire` makes.
    """

    def __init__(self, limit: int, window_s: float, margin_s: float = DEFAULT_MARGIN_S, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window_s:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return waited
                pause = self._sent[0] + self.window_s - now
            self._sleep(pause)
            waited += pause


class FileRateLimiter:
    """A sliding-window limiter whose state lives in a file, shared by every process on the machine.

    `clock` must be wall-clock time (monotonic clocks are not comparable across processes); a send
    is granted at the last reading its `acquire` makes.
    """

    _RECORD = struct.Struct("<d")

    def __init__(self, path: Path, limit: int, window_s: float,
                 margin_s: float = DEFAULT_MARGIN_S, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.limit = limit
        self.window_s = window_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._thread_lock = threading.Lock()  # flock alone would serialise threads, but more slowly

    def acquire(self) -> float:
        waited = 0.0
        while True:
            with self._thread_lock:
                pause = self._try_take()
            if pause <= 0:
                return waited
            self._sleep(pause)
            waited += pause

    def _try_take(self) -> float:
        """Record a send and return 0, or return how long to wait before trying again."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 64 * 1024)
            size = self._RECORD.size
            now = self._clock()
            sent = [t for (t,) in self._RECORD.iter_unpack(raw[: len(raw) - len(raw) % size])
                    if now - self.window_s < t <= now + 1.0]
            if len(sent) >= self.limit:
                sent.sort()
                return sent[-self.limit] + self.window_s - now
            sent.append(now)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, b"".join(self._RECORD.pack(t) for t in sent[-self.limit:]))
            return 0.0
        finally:
            os.close(fd)  # closing releases the flock


_REDIS_TAKE = """
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window * 1000) + 1000)
  return '0'
end
local oldest = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class RedisRateLimiter:
    """A sliding-window limiter in Redis, shared by every machine that points at the same server."""

    def __init__(self, redis_url: str, key: str, limit: int, window_s: float,
                 margin_s: float = DEFAULT_MARGIN_S) -> None:
        self._redis = redis.Redis.from_url(redis_url)
        self._take = self._redis.register_script(_REDIS_TAKE)
        self.key = f"cio-mavera:ratelimit:{key}"
        self.limit = limit
        self.window_s = window_s + margin_s

    def acquire(self) -> float:
        waited = 0.0
        while True:
            # Redis server time keeps every machine on one clock.
            seconds, micros = self._redis.time()
            now = seconds + micros / 1e6
            pause = float(self._take(keys=[self.key],
                                     args=[now, self.window_s, self.limit, uuid.uuid4().hex]))
            if pause <= 0:
                return waited
            time.sleep(pause)
            waited += pause


def shared_limiter(name: str, limit: int, window_s: float, *, data_dir: Path,
                   redis_url: str | None = None,
                   margin_s: float = DEFAULT_MARGIN_S) -> RateLimiter:
    """The limiter every process of the kit uses for `name`: Redis when configured, else a file."""
    if redis_url:
        return RedisRateLimiter(redis_url, name, limit, window_s, margin_s=margin_s)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return FileRateLimiter(Path(data_dir) / "ratelimit" / f"{safe}.bin", limit, window_s,
                           margin_s=margin_s)
