"""The one-line messages pkctl prints for failures, worded as kubectl words them."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit

from pklib.errors import ApiError


class CommandError(Exception):
    """A failure that is the user's to fix: printed as `error: ...`, exit code 1."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code

    def line(self) -> str:
        return f"error: {self}"


@contextmanager
def as_command_error(*types: type[Exception]) -> Iterator[None]:
    """Errors of `types` are the user's to fix: each becomes a CommandError with the same message."""
    try:
        yield
    except types as e:
        raise CommandError(str(e)) from None


class ServerError(CommandError):
    """A failure already worded in full (`Error from server (NotFound): ...`): printed as is."""

    def line(self) -> str:
        return str(self)


def api_error_line(e: ApiError, context: str | None = None) -> str:
    """kubectl's wording of a server Status, optionally naming what was being done (`error when creating "f"`)."""
    if e.code == 401 or e.reason == "Unauthorized":
        return f"error: You must be logged in to the server ({e.message or 'Unauthorized'})"
    if e.reason == "Invalid" and e.causes:
        return _invalid_line(e)
    message = f"{context}: {e.message}" if context else e.message
    return f"Error from server ({e.reason}): {message}" if e.reason else f"Error from server: {message}"


def _invalid_line(e: ApiError) -> str:
    details: dict[str, Any] = e.status.get("details") or {}
    head = "The request is invalid"
    if details.get("kind") or details.get("name"):
        head = f'The {details.get("kind", "")} "{details.get("name", "")}" is invalid'
    causes = [f"{c.get('field')}: {c.get('message', '')}" if c.get("field") else str(c.get("message", ""))
              for c in e.causes]
    if len(causes) == 1:
        return f"{head}: {causes[0]}"
    return f"{head}: \n" + "\n".join(f"* {c}" for c in causes)


def connection_refused_line(server: str) -> str:
    parts = urlsplit(server)
    host = parts.netloc or server
    return f"The connection to the server {host} was refused - did you specify the right host or port?"
