"""API errors as exceptions carrying the server's Kubernetes Status."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered by the API server (a `kind: Status` body)."""

    def __init__(self, status: dict[str, Any]):
        self.status = status
        self.code: int = int(status.get("code") or 500)
        self.reason: str = status.get("reason") or ""
        self.message: str = status.get("message") or f"HTTP {self.code}"
        super().__init__(self.message)

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list((self.status.get("details") or {}).get("causes") or [])

    @classmethod
    def from_response(cls, code: int, body: Any) -> "ApiError":
        if isinstance(body, dict) and body.get("kind") == "Status":
            body = dict(body)
            body.setdefault("code", code)
            return cls(body)
        text = body if isinstance(body, str) else repr(body)
        return cls({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                    "reason": _REASONS.get(code, "Unknown"), "message": text.strip() or f"HTTP {code}"})


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
            415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


def is_not_found(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.code == 404


def is_conflict(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.code == 409 and e.reason == "Conflict"


def is_already_exists(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.code == 409 and e.reason == "AlreadyExists"


def is_gone(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.code == 410


class ConnectionFailed(Exception):
    """The API server could not be reached at all; `refused`: nothing listens at its address."""

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused
