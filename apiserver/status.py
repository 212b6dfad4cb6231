"""Kubernetes `Status` errors and the one middleware that turns every failure into one.

Handlers raise `StatusError` (usually through the constructors below); anything
else that escapes a handler is a bug: it is logged with its traceback and
answered as a 500 Status, never as an HTML page or a dropped connection.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from .storage.interface import NoSpaceError, StorageError, ValueTooLargeError

log = logging.getLogger("apiserver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _details(resource: str | None, name: str | None, group: str = "") -> dict[str, Any] | None:
    if resource is None:
        return None
    d: dict[str, Any] = {"kind": resource}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    return d


def qualified(resource: str, group: str) -> str:
    """Kubernetes names a resource in messages as `plural` or `plural.group`."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
                       _details(resource, name, group))


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
                       _details(resource, name, group))


def conflict(resource: str, name: str, group: str = "", why: str | None = None) -> StatusError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
                       _details(resource, name, group))


def invalid(kind: str, name: str, causes: list[dict[str, str]], group: str = "", qualify: bool = False
            ) -> StatusError:
    """422 Invalid; `causes` are {reason, message, field} (metav1.StatusCause). `qualify`: the message names the
    kind with its group (`Widget.example.com "x" is invalid`), as Kubernetes words it for custom resources."""
    summary = ", ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    details: dict[str, Any] = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    shown = f"{kind}.{group}" if qualify and group else kind
    return StatusError(422, "Invalid", f'{shown} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden(message: str) -> StatusError:
    return StatusError(403, "Forbidden", message)


def forbidden_object(resource: str, name: str, group: str, why: str) -> StatusError:
    return StatusError(403, "Forbidden", f'{qualified(resource, group)} "{name}" is forbidden: {why}',
                       _details(resource, name, group))


def gone(message: str) -> StatusError:
    # Kubernetes answers a too-old resourceVersion with 410 and reason Expired.
    return StatusError(410, "Expired", message)


def method_not_allowed(method: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource "
                                                f"({method})")


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def status_response(err: StatusError) -> web.Response:
    response = json_response(err.status(), err.code)
    retry_after = (err.details or {}).get("retryAfterSeconds")
    if retry_after and err.code in (429, 503, 504):
        response.headers["Retry-After"] = str(retry_after)  # as Kubernetes' responsewriters do
    return response


@web.middleware
async def status_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StatusError as e:
        return status_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        reason = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestEntityTooLarge"}.get(e.status, "BadRequest")
        message = {404: "the server could not find the requested resource",
                   405: f"the server does not allow this method on the requested resource ({request.method})",
                   413: "the request body is too large (limit 3 MiB)"}.get(e.status, e.text or e.reason)
        return status_response(StatusError(e.status, reason, message))
    except ValueTooLargeError as e:
        return status_response(StatusError(413, "RequestEntityTooLarge", f"Request entity too large: {e}"))
    except NoSpaceError as e:
        log.warning("storage full serving %s %s: %s", request.method, request.path, e)
        return status_response(StatusError(503, "ServiceUnavailable", f"{e}; writes fail until space is recovered "
                                                                      "(see `pkctl cluster status`)"))
    except StorageError as e:
        if type(e) is not StorageError:  # a conflict/exists/not-found that no handler mapped: a bug
            log.exception("unmapped storage error serving %s %s", request.method, request.path_qs)
            return status_response(StatusError(500, "InternalError", "an internal error occurred; see the server log"))
        # etcd unreachable or failing: not the client's fault, and not a bug here.
        log.warning("storage error serving %s %s: %s", request.method, request.path, e)
        return status_response(StatusError(503, "ServiceUnavailable", f"the storage backend is unavailable: {e}"))
    except Exception:  # a bug: keep the server up, say so loudly
        log.exception("internal error serving %s %s", request.method, request.path_qs)
        return status_response(StatusError(500, "InternalError", "an internal error occurred; see the server log"))
