"""One typed settings object, read from the environment and `.env` (python-dotenv).

Keys are held as `Secret`s: they print as `Secret('****')` and only `.reveal()` gives the value, so a
settings object can be logged, repr'd or shown in a notebook without leaking anything.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]

Region = Literal["us", "eu"]
Mode = Literal["auto", "live", "sandbox"]

APP_HOSTS = {"us": "https://api.customer.io", "eu": "https://api-eu.customer.io"}
TRACK_HOSTS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
MAVERA_DEFAULT_URL = "https://app.mavera.io/api/v1"

# What each job needs from the environment to run live (DESIGN.md: mode `auto` picks live only
# when every key a job needs is set).
NEEDS: dict[str, tuple[str, ...]] = {
    "customerio": ("app_key",),
    "track": ("site_id", "api_key"),
    "mavera": ("mavera_key",),
    "webhooks": ("webhook_secret",),
}


class Secret:
    """A string that never shows itself in repr, str, f-strings or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value (only for building an auth header or a signature)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


@dataclass(frozen=True)
class Settings:
    """Everything the kit reads from the environment, resolved and validated."""

    site_id: str | None = None
    api_key: Secret | None = None  # Track API key (Basic auth with site_id)
    app_key: Secret | None = None  # App API key (Bearer)
    mavera_key: Secret | None = None
    # The Mavera workspace focus groups run in (they require one; not a secret). Unset: the only
    # workspace GET /workspaces lists for the key.
    mavera_workspace_id: str | None = None
    webhook_secret: Secret | None = None
    region: Region = "us"
    mode: Mode = "auto"
    app_url_override: str | None = None
    track_url_override: str | None = None
    mavera_url_override: str | None = None
    data_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "data")
    redis_url: str | None = None
    sandbox_seed: int = 7
    sandbox_customers: int = 5000
    sandbox_end: dt.datetime | None = None  # when the sandbox workspace's history stops (None: this hour)
    sandbox_world: str = "realistic"  # "realistic" or "clean"
    app_rps: float = 10.0  # App API limit per workspace (docs: 10 req/s)
    mavera_rpm: int = 60  # Mavera tier requests/minute (Starter tier by default)

    @property
    def app_url(self) -> str:
        return (self.app_url_override or APP_HOSTS[self.region]).rstrip("/")

    @property
    def track_url(self) -> str:
        return (self.track_url_override or TRACK_HOSTS[self.region]).rstrip("/")

    @property
    def mavera_url(self) -> str:
        return (self.mavera_url_override or MAVERA_DEFAULT_URL).rstrip("/")

    def secrets(self) -> list[str]:
        """Every secret value set, for redaction of logs and error messages."""
        found = [self.api_key, self.app_key, self.mavera_key, self.webhook_secret]
        return [s.reveal() for s in found if s]

    def has(self, need: str) -> bool:
        """True when every setting `need` (a key of NEEDS) requires is present."""
        return all(getattr(self, name) for name in NEEDS[need])

    def resolve_mode(self, *needs: str) -> Literal["live", "sandbox"]:
        """Pick live or sandbox for work that needs `needs` (keys of NEEDS).

        `auto` is live only when every needed key is set; `live` insists on them.
        """
        unknown = [n for n in needs if n not in NEEDS]
        if unknown:
            raise ConfigError(f"unknown requirement(s) {unknown}; expected some of {sorted(NEEDS)}")
        if self.mode == "sandbox":
            return "sandbox"
        missing = [n for n in needs if not self.has(n)]
        if self.mode == "live" and missing:
            names = sorted({_ENV_NAMES[a] for n in missing for a in NEEDS[n] if not getattr(self, a)})
            raise ConfigError(
                f"CIO_MAVERA_MODE=live but {', '.join(names)} {'is' if len(names) == 1 else 'are'} "
                "not set; put them in .env (see .env.example) or use CIO_MAVERA_MODE=sandbox"
            )
        return "sandbox" if missing else "live"

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields replaced (used to point clients at a sandbox server)."""
        return replace(self, **changes)


_ENV_NAMES = {
    "site_id": "CIO_SITE_ID",
    "api_key": "CIO_API_KEY",
    "app_key": "CIO_APP_KEY",
    "mavera_key": "MAVERA_API_KEY",
    "webhook_secret": "CIO_WEBHOOK_SECRET",
}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    value = value.strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not valid; use one of {', '.join(allowed)}")
    return value


def parse_instant(name: str, value: str | None) -> dt.datetime | None:
    """An ISO date or datetime (UTC when no zone is given); a date means the end of that day."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an ISO date or datetime (e.g. 2026-03-31 or "
                          "2026-03-31T12:00)") from None
    if len(value.strip()) == 10:  # a bare date: through the end of that day
        parsed += dt.timedelta(days=1)
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _number(name: str, value: str, kind: type, minimum: float = 1e-9) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value!r}")
    return number


def load_settings(env: Mapping[str, str] | None = None, *, dotenv: Path | None | bool = True) -> Settings:
    """Read settings from `env` (default: os.environ) over the project's `.env` file.

    Real environment variables win over `.env`, as python-dotenv does by default.
    """
    values: dict[str, str | None] = {}
    if dotenv:
        path = PROJECT_ROOT / ".env" if dotenv is True else Path(dotenv)
        if path.is_file():
            values.update(dotenv_values(path))
    values.update(os.environ if env is None else env)

    def get(name: str) -> str | None:
        value = values.get(name)
        return value.strip() if value and value.strip() else None

    data_dir = Path(get("CIO_MAVERA_DATA_DIR") or PROJECT_ROOT / "data")
    if not data_dir.is_absolute():
        data_dir = PROJECT_ROOT / data_dir
    return Settings(
        site_id=get("CIO_SITE_ID"),
        api_key=_secret(get("CIO_API_KEY")),
        app_key=_secret(get("CIO_APP_KEY")),
        mavera_key=_secret(get("MAVERA_API_KEY")),
        mavera_workspace_id=get("MAVERA_WORKSPACE_ID"),
        webhook_secret=_secret(get("CIO_WEBHOOK_SECRET")),
        region=_choice("CIO_REGION", get("CIO_REGION") or "us", ("us", "eu")),  # type: ignore[arg-type]
        mode=_choice("CIO_MAVERA_MODE", get("CIO_MAVERA_MODE") or "auto", ("auto", "live", "sandbox")),  # type: ignore[arg-type]
        app_url_override=get("CIO_APP_URL"),
        track_url_override=get("CIO_TRACK_URL"),
        mavera_url_override=get("MAVERA_BASE_URL"),
        data_dir=data_dir,
        redis_url=get("CIO_MAVERA_REDIS_URL"),
        sandbox_seed=int(_number("CIO_MAVERA_SANDBOX_SEED", get("CIO_MAVERA_SANDBOX_SEED") or "7", int, 0)),
        sandbox_customers=int(_number("CIO_MAVERA_SANDBOX_CUSTOMERS", get("CIO_MAVERA_SANDBOX_CUSTOMERS") or "5000", int)),
        sandbox_end=parse_instant("CIO_MAVERA_SANDBOX_END", get("CIO_MAVERA_SANDBOX_END")),
        sandbox_world=_choice("CIO_MAVERA_SANDBOX_WORLD", get("CIO_MAVERA_SANDBOX_WORLD") or "realistic",
                              ("realistic", "clean")),
        app_rps=float(_number("CIO_MAVERA_APP_RPS", get("CIO_MAVERA_APP_RPS") or "10", float)),
        mavera_rpm=int(_number("MAVERA_RPM", get("MAVERA_RPM") or "60", int)),
    )
