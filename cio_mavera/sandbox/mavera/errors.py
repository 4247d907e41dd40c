"""Errors of the Mavera sandbox and the handler that renders them in the documented envelope (§1.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

# Error `type` per status. Only 400/401/429 types are documented (§1.2); the rest are NOT FOUND,
# so clients must branch on status + code, never on type.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error"}


class MaveraHTTPError(Exception):
    """An error answer: status, code, message and the offending parameter, raised by route handlers."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param
        self.headers = headers or {}


def error_response(exc: MaveraHTTPError) -> JSONResponse:
    """`exc` as `{"error": {"message", "type", "code", "param"}}` with its status and headers."""
    body = {"error": {"message": exc.message, "type": ERROR_TYPES.get(exc.status, "api_error"),
                      "code": exc.code, "param": exc.param}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def handle_error(request: Request, exc: MaveraHTTPError) -> Response:
    """The Mavera app's exception handler for MaveraHTTPError."""
    return error_response(exc)


def missing(param: str) -> MaveraHTTPError:
    return MaveraHTTPError(400, "missing_field", f"Missing required field '{param}'.", param)


def invalid(param: str | None, why: str) -> MaveraHTTPError:
    return MaveraHTTPError(400, "invalid_field", f"Invalid value for '{param}': {why}", param)


def not_found(kind: str, ident: str, param: str | None = None) -> MaveraHTTPError:
    return MaveraHTTPError(404, "resource_not_found", f"No {kind} with id '{ident}'.", param)
