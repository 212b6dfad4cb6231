"""The async REST client every component (and pkctl's streaming commands) uses to talk to the API server.

Bodies are plain dicts (Kubernetes JSON). Errors from the server raise
`ApiError` carrying the Status; an unreachable server raises `ConnectionFailed`.
What each verb asks and how answers decode is pklib.rest's, shared with the blocking
pklib.syncclient.SyncClient (a CLI's one-shot requests).
"""
from __future__ import annotations

import asyncio
import errno
from typing import Any, AsyncIterator, Callable, Generator, Mapping, TypeVar, cast

import aiohttp
import orjson

from . import kubeconfig, rest
from .errors import ConnectionFailed
from .resources import Resource

PATCH_TYPES = rest.PATCH_TYPES
T = TypeVar("T")


# How long an idle connection to the API is kept for the next request: Go's http.Transport default (client-go's
# too). aiohttp's own 15 s closed the connections between a kubelet's requests of once a minute (its pods' volume
# refresh), and every minute began with new TLS handshakes on both ends. The apiserver keeps idle connections
# for an hour (aiohttp's server default).
IDLE_CONNECTION_TIMEOUT = 90.0


class Client:
    def __init__(self, server: str, token: str | None = None, ssl: Any = None,
                 user_agent: str = "pkube", connections: int = 100):
        self.server = server.rstrip("/")
        self._headers = rest.client_headers(user_agent, token)
        self._ssl = ssl
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        # Told of every object this client creates, updates or patches (its status too), as the server answered:
        # the controller-manager feeds its caches with it (InformerFactory.remember).
        self.on_write: Callable[[Resource, dict[str, Any]], None] | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, **kw: Any) -> "Client":
        access = kubeconfig.load(path, context)
        return cls(access.server, access.token, access.ssl_context(), **kw)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl if self._ssl is not None else True,
                                               keepalive_timeout=IDLE_CONNECTION_TIMEOUT),
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
        return await self.send(rest.Request(method, path, params, body, content_type, headers, timeout))

    async def send(self, req: rest.Request) -> Any:
        try:
            async with self.session.request(req.method, self.server + req.path, params=req.query(),
                                            data=req.data(orjson.dumps), headers=req.header_map(),
                                            timeout=aiohttp.ClientTimeout(total=req.timeout)) as resp:
                return rest.result(resp.status, resp.content_type, await resp.read(), orjson.loads)
        except aiohttp.ClientConnectionError as e:
            raise connection_failed(self.server, e) from None
        except asyncio.TimeoutError:
            raise ConnectionFailed(f"the API server at {self.server} did not answer {req.method} {req.path} "
                                   "in time") from None

    async def _object(self, req: rest.Request) -> dict[str, Any]:
        """A request whose answer is an object (every typed verb's)."""
        return cast(dict[str, Any], await self.send(req))

    async def _drive(self, steps: Generator[rest.Request, dict[str, Any], T]) -> T:
        """Run a multi-request verb of pklib.rest (e.g. list_all): each request it yields, answered in turn."""
        try:
            req = next(steps)
            while True:
                req = steps.send(await self._object(req))
        except StopIteration as done:
            return cast(T, done.value)

    # -- typed verbs ----------------------------------------------------------------------------

    async def get(self, res: Resource, name: str, namespace: str | None = None,
                  subresource: str | None = None) -> dict[str, Any]:
        return await self._object(rest.get(res, name, namespace, subresource))

    async def list(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, limit: int | None = None, continue_: str | None = None,
                   resource_version: str | None = None) -> dict[str, Any]:
        return await self._object(rest.list_(res, namespace, label_selector=label_selector,
                                             field_selector=field_selector, limit=limit, continue_=continue_,
                                             resource_version=resource_version))

    async def list_all(self, res: Resource, namespace: str | None = None, page: int | None = 500,
                       **kw: Any) -> dict[str, Any]:
        """List following `continue` tokens; returns one list with every item."""
        return await self._drive(rest.list_all(res, namespace, page, **kw))

    async def create(self, res: Resource, obj: dict[str, Any], namespace: str | None = None,
                     subresource: str | None = None, name: str | None = None,
                     params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._wrote(res, await self._object(rest.create(res, obj, namespace, subresource, name, params)),
                           subresource, params)

    async def update(self, res: Resource, obj: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        return self._wrote(res, await self._object(rest.update(res, obj, subresource)), subresource)

    async def update_status(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.update(res, obj, "status")

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str | None = None,
                    params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._wrote(res, await self._object(rest.patch(res, name, patch, namespace, patch_type=patch_type,
                                                              subresource=subresource, params=params)),
                           subresource, params)

    def _wrote(self, res: Resource, answer: dict[str, Any], subresource: str | None,
               params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        # Only the object itself: a binding, an eviction or a scale answers with something else; a dry run
        # wrote nothing.
        if self.on_write is not None and subresource in (None, "status") and not (params or {}).get("dryRun"):
            self.on_write(res, answer)
        return answer

    async def delete(self, res: Resource, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     preconditions: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._object(rest.delete(res, name, namespace, propagation_policy=propagation_policy,
                                              grace_period_seconds=grace_period_seconds, preconditions=preconditions))

    async def watch(self, res: Resource, namespace: str | None = None, *, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None, allow_bookmarks: bool = True
                    ) -> AsyncIterator[dict[str, Any]]:
        """Yields watch events {"type": ..., "object": ...} until the server closes the stream.

        An ERROR event (e.g. 410 Gone for a too-old resourceVersion) is raised as ApiError.
        """
        params = rest.watch_params(resource_version, label_selector, field_selector, timeout_seconds, allow_bookmarks)
        try:
            async with self.session.get(self.server + res.path(namespace), params=params,
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                if resp.status >= 400:  # the server's Status, raised as ApiError
                    rest.result(resp.status, resp.content_type, await resp.read(), orjson.loads)
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        event = rest.watch_event(line, orjson.loads)
                        if event is not None:
                            yield event
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            # A stream cut mid-body surfaces as a payload error: to callers both mean "reconnect".
            raise ConnectionFailed(f"watch on {res.plural} lost: {e}") from None


def connection_failed(server: str, e: aiohttp.ClientConnectionError) -> ConnectionFailed:
    """An aiohttp connection failure as ConnectionFailed, saying whether nothing listens at the address
    (kubectl words that failure on its own)."""
    refused = (isinstance(e, aiohttp.ClientConnectorError) and not isinstance(e, aiohttp.ClientSSLError)
               and e.os_error.errno == errno.ECONNREFUSED)
    return ConnectionFailed(f"cannot reach the API server at {server}: {e}", refused=refused)
