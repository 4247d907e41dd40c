"""Errors of the Mavera sandbox in the documented envelope (mavera-api.md §1.2)."""

from __future__ import annotations

from starlette.responses import JSONResponse

# Error `type` per status. Only 400/401/429 types are documented (§1.2); the rest are NOT FOUND,
# so clients must branch on status + code, never on type.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error"}


class MaveraHTTPError(Exception):
    """An error answer in the documented envelope."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": ERROR_TYPES.get(self.status, "api_error"),
                          "code": self.code, "param": self.param}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def missing(param: str) -> MaveraHTTPError:
    return MaveraHTTPError(400, "missing_field", f"Missing required field '{param}'.", param)


def invalid(param: str | None, why: str) -> MaveraHTTPError:
    return MaveraHTTPError(400, "invalid_field", f"Invalid value for '{param}': {why}", param)


def not_found(kind: str, ident: str, param: str | None = None) -> MaveraHTTPError:
    return MaveraHTTPError(404, "resource_not_found", f"No {kind} with id '{ident}'.", param)
