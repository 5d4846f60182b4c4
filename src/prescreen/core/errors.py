"""Errors a user can act on. Every one maps to a 4xx JSON body that names the problem."""

from __future__ import annotations

from typing import Any


class PrescreenError(Exception):
    """Base for errors shown to callers: `code` is stable and machine-readable."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return {"error": body}


class InvalidInput(PrescreenError):
    status_code = 422
    code = "invalid_input"


class UnsupportedMedia(PrescreenError):
    status_code = 415
    code = "unsupported_media"


class PayloadTooLarge(PrescreenError):
    status_code = 413
    code = "payload_too_large"


class NotFound(PrescreenError):
    status_code = 404
    code = "not_found"


class Conflict(PrescreenError):
    status_code = 409
    code = "conflict"


class Unauthorized(PrescreenError):
    status_code = 401
    code = "unauthorized"


class Forbidden(PrescreenError):
    status_code = 403
    code = "forbidden"
