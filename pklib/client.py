"""The async REST client every component (and pkctl) uses to talk to the API server.

Bodies are plain dicts (Kubernetes JSON). Errors from the server raise
`ApiError` carrying the Status; an unreachable server raises `ConnectionFailed`.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping, cast

import aiohttp
import orjson

from . import kubeconfig
from .errors import ApiError, ConnectionFailed
from .resources import Resource

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class Client:
    def __init__(self, server: str, token: str | None = None, ssl: Any = None,
                 user_agent: str = "pkube", connections: int = 100):
        self.server = server.rstrip("/")
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ssl = ssl
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, **kw: Any) -> "Client":
        access = kubeconfig.load(path, context)
        return cls(access.server, access.token, access.ssl_context(), **kw)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl if self._ssl is not None else True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- raw requests -------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      headers: Mapping[str, str] | None = None, timeout: float | None = 60) -> Any:
        """One request; returns the decoded JSON body (or text), raises ApiError on >= 400."""
        data: bytes | None = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else orjson.dumps(body)
            hdrs["Content-Type"] = content_type
        try:
            async with self.session.request(method, self.server + path, params=_params(params), data=data,
                                            headers=hdrs, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                decoded = _decode(raw, resp.content_type)
                if resp.status >= 400:
                    raise ApiError.from_response(resp.status, decoded)
                return decoded
        except aiohttp.ClientConnectionError as e:
            raise ConnectionFailed(f"cannot reach the API server at {self.server}: {e}") from None
        except asyncio.TimeoutError:
            raise ConnectionFailed(f"the API server at {self.server} did not answer {method} {path} in time") from None

    async def _object(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """A request whose answer is an object (every typed verb's)."""
        return cast(dict[str, Any], await self.request(method, path, **kw))

    # -- typed verbs ----------------------------------------------------------------------------

    async def get(self, res: Resource, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> dict[str, Any]:
        return await self._object("GET", res.path(namespace, name, subresource))

    async def list(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, limit: int | None = None, continue_: str | None = None,
                   resource_version: str | None = None) -> dict[str, Any]:
        params = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
                  "continue": continue_, "resourceVersion": resource_version}
        return await self._object("GET", res.path(namespace), params=params)

    async def list_all(self, res: Resource, namespace: str | None = None, page: int = 500,
                       **kw: Any) -> dict[str, Any]:
        """List following `continue` tokens; returns one list with every item."""
        result = await self.list(res, namespace, limit=page, **kw)
        items = list(result.get("items") or [])
        while (result.get("metadata") or {}).get("continue"):
            result = await self.list(res, namespace, limit=page, continue_=result["metadata"]["continue"], **kw)
            items.extend(result.get("items") or [])
        result["items"] = items
        return result

    async def create(self, res: Resource, obj: dict[str, Any], namespace: str | None = None,
                     subresource: str | None = None, name: str | None = None) -> dict[str, Any]:
        ns = namespace or (obj.get("metadata") or {}).get("namespace") if res.namespaced else None
        if subresource:
            return await self._object("POST", res.path(ns, name or obj["metadata"]["name"], subresource), body=obj)
        return await self._object("POST", res.path(ns), body=obj)

    async def update(self, res: Resource, obj: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        meta = obj["metadata"]
        ns = meta.get("namespace") if res.namespaced else None
        return await self._object("PUT", res.path(ns, meta["name"], subresource), body=obj)

    async def update_status(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.update(res, obj, "status")

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str | None = None,
                    params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self._object("PATCH", res.path(namespace, name, subresource), body=patch,
                                  content_type=PATCH_TYPES[patch_type], params=params)

    async def delete(self, res: Resource, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     preconditions: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            body["preconditions"] = preconditions
        return await self._object("DELETE", res.path(namespace, name), body=body)

    async def watch(self, res: Resource, namespace: str | None = None, *, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None, allow_bookmarks: bool = True
                    ) -> AsyncIterator[dict[str, Any]]:
        """Yields watch events {"type": ..., "object": ...} until the server closes the stream.

        An ERROR event (e.g. 410 Gone for a too-old resourceVersion) is raised as ApiError.
        """
        params = {"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if allow_bookmarks else None}
        try:
            async with self.session.get(self.server + res.path(namespace), params=_params(params),
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                if resp.status >= 400:
                    raise ApiError.from_response(resp.status, _decode(await resp.read(), resp.content_type))
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if not line.strip():
                            continue
                        event = orjson.loads(line)
                        if event.get("type") == "ERROR":
                            raise ApiError.from_response(int((event.get("object") or {}).get("code") or 500),
                                                         event.get("object"))
                        yield event
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            # A stream cut mid-body surfaces as a payload error: to callers both mean "reconnect".
            raise ConnectionFailed(f"watch on {res.plural} lost: {e}") from None


def _params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    return {k: str(v) for k, v in params.items() if v is not None and v != ""}


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return raw.decode(errors="replace")
