"""A throwaway `redis-server` on 127.0.0.1 (free port, temp dir) for tests and the bench."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

MISSING_REASON = "redis-server binary not found (apt-get install -y redis-server; `make test` installs it)"


def redis_available() -> bool:
    """True when a redis-server binary is on PATH."""
    return shutil.which("redis-server") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """Start with `RedisServer()`; `.url` to connect; `.stop()` kills it and removes its directory."""

    def __init__(self, *, appendfsync: str = "everysec", timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(MISSING_REASON)
        self.dir = Path(tempfile.mkdtemp(prefix="cio-mavera-redis-"))
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--save", "", "--appendonly", "yes", "--appendfsync", appendfsync,
             "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                        self.stop()
                        raise RuntimeError(f"redis-server did not start: {err.strip()[:500]}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def flush(self) -> None:
        """Delete every key (between tests sharing one server)."""
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
