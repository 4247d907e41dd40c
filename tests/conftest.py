"""Shared fixtures: a real sandbox server on loopback and settings pointed at it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cio_mavera.connect import Connection, pointed_at
from cio_mavera.sandbox.server import SandboxServer, start_sandbox
from cio_mavera.settings import Settings

# Every sandbox a test starts ends here, so no outcome depends on the day the tests run.
END = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)
# For sandboxes started inside a notebook kernel (papermill, nbval): the same pinned end.
PINNED_END = {"CIO_MAVERA_SANDBOX_END": END.isoformat()}


def settings_for(server: SandboxServer, data_dir: Path, **overrides: object) -> Settings:
    """Settings that talk to `server` in live mode (the same code path as real services)."""
    return pointed_at(Settings(data_dir=data_dir, mode="live"), server.env()).with_overrides(**overrides)


@pytest.fixture(scope="session")
def shared_server() -> Iterator[SandboxServer]:
    """One default sandbox (seed 7, 2,000 customers) for tests that only read."""
    server = start_sandbox(seed=7, customers=2000, end=END)
    yield server
    server.stop()


@pytest.fixture
def sandbox(shared_server: SandboxServer) -> SandboxServer:
    """The shared sandbox with its stats, request log, faults and API state reset."""
    shared_server.state.reset()
    return shared_server


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., SandboxServer]]:
    """Start a dedicated sandbox with custom knobs (latency_ms, fault_rate, seed, ...)."""
    started: list[SandboxServer] = []

    def make(**knobs: object) -> SandboxServer:
        server = start_sandbox(**{"end": END, **knobs})
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sandbox_settings(sandbox: SandboxServer, tmp_path: Path) -> Settings:
    """Settings pointed at the shared sandbox, with a private data dir."""
    return settings_for(sandbox, tmp_path / "data")


@pytest.fixture
def connection(sandbox: SandboxServer, sandbox_settings: Settings) -> Connection:
    """A live-mode connection to the shared sandbox (cache under the test's data dir)."""
    return Connection(sandbox_settings, "live", "sandbox-test", sandbox_url=sandbox.url)
