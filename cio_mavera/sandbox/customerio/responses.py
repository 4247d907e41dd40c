"""How the Customer.io sandbox answers: JSON with the live headers, and the error classes handlers raise.

Route handlers raise AppError / TrackV1Error / TrackV2Error; each app's exception handlers (below)
render them in that API's documented envelope.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

JSON_TYPE = "application/json; charset=utf-8"
APP_HEADERS = {"cache-control": "must-revalidate,no-cache,no-store"}
TRACK_HEADERS = {"cache-control": "no-cache"}


def app_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON response with the live App API's content type and cache headers."""
    return JSONResponse(body, status_code=status, headers={**APP_HEADERS, **(headers or {})},
                        media_type=JSON_TYPE)


def track_json(body: Any, status: int = 200) -> JSONResponse:
    """A JSON response with the live Track API's content type and cache headers."""
    return JSONResponse(body, status_code=status, headers=TRACK_HEADERS, media_type=JSON_TYPE)


class AppError(Exception):
    """An App API error answer: status and the `detail` of its errors envelope."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def app_error_response(exc: AppError) -> JSONResponse:
    """`{"errors": [{"detail", "status"}]}` (`status` is a string, as in the current spec)."""
    return app_json({"errors": [{"detail": exc.detail, "status": str(exc.status)}]}, exc.status,
                    exc.headers)


async def handle_app_error(request: Request, exc: AppError) -> Response:
    """The App API app's exception handler for AppError."""
    return app_error_response(exc)


class TrackV1Error(Exception):
    """A Track v1 error answer: status and message, in the legacy `meta` envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def track_v1_error_response(exc: TrackV1Error) -> JSONResponse:
    """400s list their message in `meta.errors`; other statuses carry it in `meta.error`."""
    if exc.status == 400:
        return track_json({"meta": {"errors": [exc.message]}}, exc.status)
    return track_json({"meta": {"error": exc.message}}, exc.status)


class TrackV2Error(Exception):
    """A Track v2 error answer: status and one `{reason, field, message}` item of its errors list."""

    def __init__(self, status: int, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.item = {"reason": reason, "field": field, "message": message}


def track_v2_error_response(exc: TrackV2Error) -> JSONResponse:
    return track_json({"errors": [exc.item]}, exc.status)


async def handle_track_v1_error(request: Request, exc: TrackV1Error) -> Response:
    """The Track app's exception handler for TrackV1Error."""
    return track_v1_error_response(exc)


async def handle_track_v2_error(request: Request, exc: TrackV2Error) -> Response:
    """The Track app's exception handler for TrackV2Error."""
    return track_v2_error_response(exc)
