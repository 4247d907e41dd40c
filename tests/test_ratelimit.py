"""Rate limiters: no window ever holds more than the limit, across threads and processes."""

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from cio_mavera.ratelimit import FileRateLimiter, SlidingWindowLimiter, shared_limiter


class GrantClock:
    """A real clock that remembers each thread's last reading: its grant time once acquire returns.

    Stamping after `acquire` returns instead would count a thread that was descheduled in between
    as sent later than it was, and see limits broken that were kept.
    """

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._local = threading.local()

    def __call__(self) -> float:
        self._local.last = self._clock()
        return self._local.last

    @property
    def last(self) -> float:
        return self._local.last


def _busiest_window(stamps: list[float], window_s: float) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while stamps[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def _take_many(path: str, n: int, out) -> None:
    clock = GrantClock(time.time)
    limiter = FileRateLimiter(Path(path), limit=5, window_s=0.2, margin_s=0.0, clock=clock)
    for _ in range(n):
        limiter.acquire()
        out.put(clock.last)


def test_sliding_window_limiter_never_exceeds_the_limit_across_threads():
    clock = GrantClock()
    limiter = SlidingWindowLimiter(limit=5, window_s=0.2, margin_s=0.0, clock=clock)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(6):
            limiter.acquire()
            with lock:
                stamps.append(clock.last)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stamps) == 24
    assert _busiest_window(stamps, 0.2) <= 5


def test_file_limiter_is_shared_by_two_processes(tmp_path):
    path = tmp_path / "bucket.bin"
    queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_take_many, args=(str(path), 8, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    stamps = [queue.get(timeout=30) for _ in range(16)]
    for p in procs:
        p.join()
    # Both processes together respect one budget of 5 per 0.2 s.
    assert _busiest_window(stamps, 0.2) <= 5


def test_file_limiter_survives_a_garbage_state_file(tmp_path):
    path = tmp_path / "bucket.bin"
    path.write_bytes(b"\x00garbage")
    limiter = FileRateLimiter(path, limit=2, window_s=0.1)
    assert limiter.acquire() == 0.0


def test_shared_limiter_uses_a_file_under_the_data_dir(tmp_path):
    limiter = shared_limiter("cio-app/ws 1", 10, 1.0, data_dir=tmp_path)
    limiter.acquire()
    assert (tmp_path / "ratelimit" / "cio-app_ws_1.bin").exists()


def _take_many_redis(url: str, n: int, out) -> None:
    from cio_mavera.ratelimit import RedisRateLimiter

    limiter = RedisRateLimiter(url, "test-bucket", limit=5, window_s=0.2, margin_s=0.0)
    for _ in range(n):
        limiter.acquire()
        out.put(time.time())


@pytest.mark.redis
def test_redis_limiter_is_shared_by_two_processes():
    from redis_server import MISSING_REASON, RedisServer, redis_available

    if not redis_available():
        pytest.skip(MISSING_REASON)
    with RedisServer() as server:
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_take_many_redis, args=(server.url, 8, queue)) for _ in range(2)]
        for p in procs:
            p.start()
        stamps = [queue.get(timeout=30) for _ in range(16)]
        for p in procs:
            p.join()
    assert _busiest_window(stamps, 0.19) <= 5


def test_shared_limiter_prefers_redis_when_configured(monkeypatch, tmp_path):
    from cio_mavera import ratelimit

    created = {}

    class FakeRedisLimiter:
        def __init__(self, url, key, limit, window_s, margin_s):
            created.update(url=url, key=key, limit=limit)

    monkeypatch.setattr(ratelimit, "RedisRateLimiter", FakeRedisLimiter)
    shared_limiter("cio-app-ws", 10, 1.0, data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    assert created == {"url": "redis://127.0.0.1:1/0", "key": "cio-app-ws", "limit": 10}
    assert not (tmp_path / "ratelimit").exists()
