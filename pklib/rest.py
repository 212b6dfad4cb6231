"""The requests both API clients send and how they read the answers, with no I/O of its own.

pklib.client.Client (asyncio, aiohttp: components, watches, streams) and pklib.syncclient.SyncClient
(blocking, http.client: a CLI's one-shot requests) differ only in how bytes travel. What a typed verb
asks (path, parameters, body, content type), how a body is encoded, how an answer is decoded and how
an error answer becomes an ApiError carrying the server's Status is written once, here.

JSON is the standard library's unless the caller passes other `dumps`/`loads`: the components' asyncio client
passes orjson's (several times faster on big lists), while a one-shot CLI process does without importing orjson,
which pulls in dataclasses, inspect and uuid (~10 ms of every pkctl run). For the same reason nothing on pkctl's
path of one-shot requests uses dataclasses.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Generator, Mapping, NamedTuple

from .errors import ApiError
from .resources import Resource

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
# Seconds a one-shot request may take unless the caller says otherwise.
DEFAULT_TIMEOUT = 60.0


def dumps(obj: Any) -> bytes:
    """Compact JSON, as orjson.dumps writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


Loads = Callable[[bytes], Any]


class Request(NamedTuple):
    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None  # a dict/list (sent as JSON), str or bytes (sent as is)
    content_type: str = "application/json"
    headers: Mapping[str, str] | None = None
    timeout: float | None = DEFAULT_TIMEOUT

    def data(self, dumps: Callable[[Any], bytes] = dumps) -> bytes | None:
        body = self.body
        if body is None:
            return None
        return body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else dumps(body)

    def header_map(self) -> dict[str, str]:
        """The request's own headers (the client adds its User-Agent, Accept and Authorization)."""
        hdrs = dict(self.headers or {})
        if self.body is not None:
            hdrs["Content-Type"] = self.content_type
        return hdrs

    def query(self) -> dict[str, str] | None:
        return query(self.params)


def client_headers(user_agent: str, token: str | None) -> dict[str, str]:
    """What every request of a client carries."""
    headers = {"User-Agent": user_agent, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Query parameters as strings; unset (None or empty) ones are left out."""
    if not params:
        return None
    return {k: str(v) for k, v in params.items() if v is not None and v != ""}


def decode(raw: bytes, content_type: str, loads: Loads = json.loads) -> Any:
    """A body as JSON when it says it is (and is), else as text; None when empty."""
    if not raw:
        return None
    if "json" in content_type:
        try:
            return loads(raw)
        except ValueError:  # json's and orjson's JSONDecodeError, and bytes that are not UTF-8
            pass
    return raw.decode(errors="replace")


def result(status: int, content_type: str, raw: bytes, loads: Loads = json.loads) -> Any:
    """The decoded answer; an error status raises ApiError with the server's Status (or one made from the text)."""
    decoded = decode(raw, content_type, loads)
    if status >= 400:
        raise ApiError.from_response(status, decoded)
    return decoded


def watch_event(line: bytes, loads: Loads = json.loads) -> dict[str, Any] | None:
    """One line of a watch stream as its event; None for a blank line. An ERROR event raises its ApiError."""
    if not line.strip():
        return None
    event: dict[str, Any] = loads(line)
    if event.get("type") == "ERROR":
        raise ApiError.from_response(int((event.get("object") or {}).get("code") or 500), event.get("object"))
    return event


# -- what each typed verb asks -------------------------------------------------------------------------------------

def get(res: Resource, name: str, namespace: str | None = None, subresource: str | None = None) -> Request:
    return Request("GET", res.path(namespace, name, subresource))


def list_(res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
          field_selector: str | None = None, limit: int | None = None, continue_: str | None = None,
          resource_version: str | None = None) -> Request:
    params = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
              "continue": continue_, "resourceVersion": resource_version}
    return Request("GET", res.path(namespace), params=params)


def list_all(res: Resource, namespace: str | None = None, page: int | None = 500,
             **kw: Any) -> Generator[Request, dict[str, Any], dict[str, Any]]:
    """Listing following `continue` tokens: yields each page's request, is sent its answer, returns one list
    with every item (a client drives it). `page` None: one request without a limit."""
    result_ = yield list_(res, namespace, limit=page, **kw)
    items = list(result_.get("items") or [])
    while (result_.get("metadata") or {}).get("continue"):
        result_ = yield list_(res, namespace, limit=page, continue_=result_["metadata"]["continue"], **kw)
        items.extend(result_.get("items") or [])
    result_["items"] = items
    return result_


def create(res: Resource, obj: dict[str, Any], namespace: str | None = None, subresource: str | None = None,
           name: str | None = None, params: Mapping[str, Any] | None = None) -> Request:
    ns = namespace or (obj.get("metadata") or {}).get("namespace") if res.namespaced else None
    if subresource:
        return Request("POST", res.path(ns, name or obj["metadata"]["name"], subresource), body=obj, params=params)
    return Request("POST", res.path(ns), body=obj, params=params)


def update(res: Resource, obj: dict[str, Any], subresource: str | None = None) -> Request:
    meta = obj["metadata"]
    ns = meta.get("namespace") if res.namespaced else None
    return Request("PUT", res.path(ns, meta["name"], subresource), body=obj)


def patch(res: Resource, name: str, body: Any, namespace: str | None = None, *, patch_type: str = "merge",
          subresource: str | None = None, params: Mapping[str, Any] | None = None) -> Request:
    return Request("PATCH", res.path(namespace, name, subresource), body=body, content_type=PATCH_TYPES[patch_type],
                   params=params)


def delete(res: Resource, name: str, namespace: str | None = None, *, propagation_policy: str | None = None,
           grace_period_seconds: int | None = None, preconditions: dict[str, Any] | None = None) -> Request:
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if propagation_policy:
        body["propagationPolicy"] = propagation_policy
    if grace_period_seconds is not None:
        body["gracePeriodSeconds"] = grace_period_seconds
    if preconditions:
        body["preconditions"] = preconditions
    return Request("DELETE", res.path(namespace, name), body=body)


def watch_params(resource_version: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, timeout_seconds: int | None = None,
                 allow_bookmarks: bool = True) -> dict[str, str] | None:
    return query({"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if allow_bookmarks else None})
