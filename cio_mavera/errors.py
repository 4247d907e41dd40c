"""Exception hierarchy: every error the kit raises is a `CioMaveraError` with an actionable message."""

from __future__ import annotations


class CioMaveraError(Exception):
    """Base class for every error raised by cio_mavera."""


class ConfigError(CioMaveraError):
    """Settings are missing or invalid (raised before any request is made)."""


class InvalidParameter(CioMaveraError, ValueError):
    """A caller passed a parameter the API would reject; raised before any request."""


class ApiError(CioMaveraError):
    """An API answered with an error status.

    `service` is "customerio-app", "customerio-track" or "mavera"; `code` is the API's own error code
    when it sends one.
    """

    def __init__(self, message: str, *, service: str, status: int | None = None,
                 code: str | None = None, body: object = None) -> None:
        super().__init__(message)
        self.service = service
        self.status = status
        self.code = code
        self.body = body


class AuthError(ApiError):
    """401/403: the key is missing, wrong, revoked, or for another region."""


class NotFound(ApiError):
    """404: the named resource does not exist."""


class RateLimited(ApiError):
    """429 after every retry was spent."""


class ServerError(ApiError):
    """5xx or a connection failure after every retry was spent."""


class Unreachable(ServerError):
    """The host cannot be reached in a way retrying cannot fix (no such host, certificate refused)."""


class CreditsExhausted(ApiError):
    """402 from Mavera: no credits left (`credits_exhausted`) or a workspace budget hit (`budget_exceeded`)."""


class BudgetExceeded(CioMaveraError):
    """A call was refused locally because its worst-case cost would overrun the run's `max_credits`."""

    def __init__(self, message: str, *, needed: int = 0, remaining: int = 0) -> None:
        super().__init__(message)
        self.needed = needed
        self.remaining = remaining


class CacheError(CioMaveraError):
    """A cache entry could not be read or written."""
