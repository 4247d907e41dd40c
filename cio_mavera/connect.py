"""Resolve live vs sandbox once, and hand every client the same URLs, keys and cache namespace.

In sandbox mode an in-process sandbox server is started on loopback (one per seed and size) and the
settings are pointed at it, so the clients run exactly the same code path as against the real
services. Sandbox and live data never share a cache directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .customerio.region import in_detected_region
from .sandbox.server import shared_sandbox
from .settings import Secret, Settings, load_settings


@dataclass(frozen=True)
class Connection:
    """Where a job's requests go: resolved settings, mode, and the cache namespace."""

    settings: Settings
    mode: Literal["live", "sandbox"]
    workspace: str
    sandbox_url: str | None = None

    @property
    def cache_dir(self) -> Path:
        """`data/cache/<mode>/<workspace>`: the parquet cache root for this connection."""
        return self.settings.data_dir / "cache" / self.mode / self.workspace

    @property
    def today(self) -> dt.date:
        """The last day with data: a pinned sandbox's end day, else today (UTC)."""
        end = self.settings.sandbox_end if self.mode == "sandbox" else None
        if end is not None:
            return (end - dt.timedelta(microseconds=1)).date()
        return dt.datetime.now(dt.UTC).date()

    def describe(self) -> str:
        """One line for reports and CLI output (never a key)."""
        where = self.sandbox_url if self.mode == "sandbox" else self.settings.app_url
        return f"{self.mode} workspace {self.workspace} ({where})"


def pointed_at(settings: Settings, env: Mapping[str, str]) -> Settings:
    """`settings` aimed at a sandbox server: its URLs and keys, as from `/__sandbox__/env`."""
    return settings.with_overrides(
        site_id=env["CIO_SITE_ID"],
        api_key=Secret(env["CIO_API_KEY"]),
        app_key=Secret(env["CIO_APP_KEY"]),
        mavera_key=Secret(env["MAVERA_API_KEY"]),
        mavera_workspace_id=env.get("MAVERA_WORKSPACE_ID"),
        app_url_override=env["CIO_APP_URL"],
        track_url_override=env["CIO_TRACK_URL"],
        mavera_url_override=env["MAVERA_BASE_URL"],
    )


def live_workspace(settings: Settings) -> str:
    """The cache and rate-limit namespace of a live workspace (never the key itself)."""
    if settings.site_id:
        return f"site-{settings.site_id}"
    if settings.app_key:
        # A short one-way digest names the workspace without storing the key.
        return "app-" + hashlib.sha256(settings.app_key.reveal().encode()).hexdigest()[:12]
    return "mavera-only"


def connect(*needs: str, settings: Settings | None = None) -> Connection:
    """A `Connection` for work that needs `needs` ("customerio", "track", "mavera", "webhooks")."""
    settings = settings or load_settings()
    mode = settings.resolve_mode(*(needs or ("customerio", "mavera")))
    if mode == "live":
        if "customerio" in needs or not needs:
            settings = in_detected_region(settings)
        return Connection(settings, "live", live_workspace(settings))

    server = shared_sandbox(settings.sandbox_seed, settings.sandbox_customers,
                            end=settings.sandbox_end, world=settings.sandbox_world)
    sandboxed = pointed_at(settings, server.env())
    return Connection(sandboxed, "sandbox", sandbox_workspace(settings), sandbox_url=server.url)


def sandbox_workspace(settings: Settings) -> str:
    """The cache namespace of a sandbox workspace: its seed, size, and world and end when set."""
    name = f"seed{settings.sandbox_seed}-n{settings.sandbox_customers}"
    if settings.sandbox_world != "realistic":
        name += f"-{settings.sandbox_world}"
    if settings.sandbox_end is not None:
        name += f"-end{settings.sandbox_end:%Y%m%dT%H%M}"
    return name
