"""Which webhook intake this is (live or sandbox), the key it verifies with, and where its data lives.

Fails closed: a receiver that may see live events never verifies with the sandbox's public key. Live
means CIO_MAVERA_MODE=live, or `auto` with any Customer.io credential or CIO_WEBHOOK_SECRET set;
without the secret a live receiver does not start unless told `--insecure-skip-verify`. Sandbox
intake keeps its queue, event log and dead letters under `<data dir>/sandbox/` (and its own Redis
prefix), so sandbox events never mix with live ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from ..customerio.webhooks import SANDBOX_WEBHOOK_SECRET
from ..errors import ConfigError
from ..settings import Secret, Settings
from .queues import WebhookQueue, default_queue_path, open_queue

IntakeMode = Literal["live", "sandbox"]

SANDBOX_SUBDIR = "sandbox"
SANDBOX_REDIS_PREFIX = "cio-mavera:sandbox:webhooks"


def intake_mode(settings: Settings) -> IntakeMode:
    """`live` unless the mode is sandbox, or `auto` with no Customer.io credential and no webhook secret."""
    if settings.mode != "auto":
        return settings.mode  # type: ignore[return-value]
    credentials = (settings.webhook_secret, settings.app_key, settings.api_key, settings.site_id)
    return "live" if any(credentials) else "sandbox"


def intake_dir(settings: Settings) -> Path:
    """Where the receiver's queue, the event log and dead letters live: the data dir, or its `sandbox/`."""
    if intake_mode(settings) == "sandbox":
        return settings.data_dir / SANDBOX_SUBDIR
    return settings.data_dir


def event_log_dir(settings: Settings) -> Path:
    """The parquet event log `webhooks work` writes: `<intake dir>/events/`."""
    return intake_dir(settings) / "events"


def receiver_secret(settings: Settings, insecure_skip_verify: bool = False) -> Secret | None:
    """The key to verify X-CIO-Signature with; None only when verification is explicitly skipped.

    Raises ConfigError for live intake without CIO_WEBHOOK_SECRET: the sandbox key is public.
    """
    if insecure_skip_verify:
        return None
    if settings.webhook_secret:
        return settings.webhook_secret
    if intake_mode(settings) == "sandbox":
        return Secret(SANDBOX_WEBHOOK_SECRET)
    why = "CIO_MAVERA_MODE=live" if settings.mode == "live" else "Customer.io keys are set"
    raise ConfigError(
        f"{why} but CIO_WEBHOOK_SECRET is not: the receiver will not verify live webhooks with the "
        "public sandbox key. Set CIO_WEBHOOK_SECRET to the reporting webhook's signing key "
        "(Integrations > Reporting webhooks), use CIO_MAVERA_MODE=sandbox for sandbox traffic, or pass "
        "--insecure-skip-verify for a local experiment"
    )


def intake_queue_url(settings: Settings, url: str | Path | None = None) -> str | Path:
    """The queue to use: `url`, else CIO_MAVERA_REDIS_URL, else SQLite under the intake dir.

    In sandbox mode a Redis URL without `?prefix=` gets the sandbox prefix.
    """
    chosen: str | Path = url or settings.redis_url or default_queue_path(intake_dir(settings))
    if intake_mode(settings) == "sandbox" and isinstance(chosen, str):
        parts = urlsplit(chosen)
        if parts.scheme in ("redis", "rediss", "unix") and "prefix" not in parse_qs(parts.query):
            chosen += ("&" if parts.query else "?") + f"prefix={SANDBOX_REDIS_PREFIX}"
    return chosen


def open_intake_queue(settings: Settings, url: str | Path | None = None) -> WebhookQueue:
    """Open the queue `intake_queue_url` names."""
    return open_queue(intake_queue_url(settings, url))
