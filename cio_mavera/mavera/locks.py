"""A lock per name across the threads and processes of one machine (for creating personas once)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def _thread_lock(name: str) -> Iterator[None]:
    # flock is per process; threads of one process need their own lock on top.
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(name, threading.Lock())
    with lock:
        yield


@contextmanager
def name_lock(folder: Path, kind: str, name: str) -> Iterator[None]:
    """Hold the lock for `name` (case- and space-insensitive) of `kind` while the block runs."""
    digest = hashlib.sha256(" ".join(name.split()).casefold().encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    with _thread_lock(f"{kind}-{digest}"):
        fd = os.open(folder / f"{kind}-{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
