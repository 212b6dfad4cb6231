"""The blocking REST client for one-shot requests (a CLI's `get`, `apply`, `delete`...), with no event loop.

It keeps one keep-alive HTTP/1.1 connection (http.client) for its requests, one after the other, and
behaves as pklib.client.Client does for them: same headers and auth, same typed verbs, same request
bodies and answer decoding (pklib.rest), an error answer raised as ApiError with the server's Status,
an unreachable server as ConnectionFailed. Watches and interactive streams stay with Client (aiohttp);
`stream` here reads one response as it arrives (a log).
"""
from __future__ import annotations

import http.client
import socket
import ssl as ssl_
from typing import Any, Generator, Iterator, Mapping, TypeVar, cast
from urllib.parse import quote, urlencode, urlsplit

from . import kubeconfig, rest
from .errors import ConnectionFailed
from .resources import Resource

T = TypeVar("T")
# Seconds to wait for the TCP (and TLS) connection, as Client's sock_connect.
CONNECT_TIMEOUT = 10.0
# What a server closing an idle keep-alive connection looks like when it is next used: send again, once.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class SyncClient:
    def __init__(self, server: str, token: str | None = None, ssl: ssl_.SSLContext | bool | None = None,
                 user_agent: str = "pkube"):
        """`ssl` as Client takes it: a context, False to skip verification, None for the default verification."""
        self.server = server.rstrip("/")
        url = urlsplit(self.server)
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path
        self._headers = rest.client_headers(user_agent, token)
        self._ssl = ssl
        self._conn: http.client.HTTPConnection | None = None
        self._used = False  # whether the open connection has answered a request (then it may have gone stale)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, **kw: Any) -> "SyncClient":
        access = kubeconfig.load(path, context)
        return cls(access.server, access.token, access.ssl_context(), **kw)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- raw requests -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None,
                content_type: str = "application/json", headers: Mapping[str, str] | None = None,
                timeout: float | None = rest.DEFAULT_TIMEOUT) -> Any:
        """One request; returns the decoded JSON body (or text), raises ApiError on >= 400."""
        return self.send(rest.Request(method, path, params, body, content_type, headers, timeout))

    def send(self, req: rest.Request) -> Any:
        resp = self._open(req)
        try:
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise self._failed(req, e) from None
        return rest.result(resp.status, resp.headers.get_content_type(), raw)

    def stream(self, req: rest.Request, chunk: int = 65536) -> Iterator[bytes]:
        """The body of one answer as it arrives (e.g. a followed log); an error answer raises ApiError."""
        resp = self._open(req)
        try:
            if resp.status >= 400:
                rest.result(resp.status, resp.headers.get_content_type(), resp.read())
            while data := resp.read1(chunk):
                yield data
        except (OSError, http.client.HTTPException) as e:
            raise self._failed(req, e) from None
        finally:
            self.close()  # a stream may end before its body does: never reuse that connection

    def _open(self, req: rest.Request) -> http.client.HTTPResponse:
        """Send the request and read the answer's head, on the kept connection (or a new one once it went stale)."""
        target = self._prefix + req.path
        params = req.query()
        if params:
            target += "?" + urlencode(params, quote_via=quote)
        headers = {**self._headers, **req.header_map()}
        data = req.data()
        while True:
            reused = self._conn is not None and self._used
            try:
                conn = self._connection()
                if conn.sock is not None:
                    conn.sock.settimeout(req.timeout)
                conn.request(req.method, target, body=data, headers=headers)
                resp = conn.getresponse()
                self._used = True
                return resp
            except _STALE as e:
                self.close()
                if not reused:
                    raise self._failed(req, e) from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise self._failed(req, e) from None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            conn: http.client.HTTPConnection
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=CONNECT_TIMEOUT,
                                                   context=_tls_context(self._ssl))
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT)
            conn.connect()
            self._conn, self._used = conn, False
        return self._conn

    def _failed(self, req: rest.Request, e: BaseException) -> ConnectionFailed:
        if isinstance(e, (socket.timeout, TimeoutError)):
            return ConnectionFailed(f"the API server at {self.server} did not answer {req.method} {req.path} in time")
        return ConnectionFailed(f"cannot reach the API server at {self.server}: {e}",
                                refused=isinstance(e, ConnectionRefusedError))

    def _object(self, req: rest.Request) -> dict[str, Any]:
        """A request whose answer is an object (every typed verb's)."""
        return cast(dict[str, Any], self.send(req))

    def _drive(self, steps: Generator[rest.Request, dict[str, Any], T]) -> T:
        """Run a multi-request verb of pklib.rest (e.g. list_all): each request it yields, answered in turn."""
        try:
            req = next(steps)
            while True:
                req = steps.send(self._object(req))
        except StopIteration as done:
            return cast(T, done.value)

    # -- typed verbs (Client's, blocking) -------------------------------------------------------

    def get(self, res: Resource, name: str, namespace: str | None = None,
            subresource: str | None = None) -> dict[str, Any]:
        return self._object(rest.get(res, name, namespace, subresource))

    def list(self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None, limit: int | None = None, continue_: str | None = None,
             resource_version: str | None = None) -> dict[str, Any]:
        return self._object(rest.list_(res, namespace, label_selector=label_selector, field_selector=field_selector,
                                       limit=limit, continue_=continue_, resource_version=resource_version))

    def list_all(self, res: Resource, namespace: str | None = None, page: int | None = 500,
                 **kw: Any) -> dict[str, Any]:
        """List following `continue` tokens; returns one list with every item."""
        return self._drive(rest.list_all(res, namespace, page, **kw))

    def create(self, res: Resource, obj: dict[str, Any], namespace: str | None = None,
               subresource: str | None = None, name: str | None = None,
               params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._object(rest.create(res, obj, namespace, subresource, name, params))

    def update(self, res: Resource, obj: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        return self._object(rest.update(res, obj, subresource))

    def update_status(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return self.update(res, obj, "status")

    def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, *,
              patch_type: str = "merge", subresource: str | None = None,
              params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._object(rest.patch(res, name, patch, namespace, patch_type=patch_type, subresource=subresource,
                                       params=params))

    def delete(self, res: Resource, name: str, namespace: str | None = None, *,
               propagation_policy: str | None = None, grace_period_seconds: int | None = None,
               preconditions: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._object(rest.delete(res, name, namespace, propagation_policy=propagation_policy,
                                        grace_period_seconds=grace_period_seconds, preconditions=preconditions))


def _tls_context(setting: ssl_.SSLContext | bool | None) -> ssl_.SSLContext:
    """Client's `ssl` setting as a context: its own, one that verifies nothing (False), or the default one."""
    if isinstance(setting, ssl_.SSLContext):
        return setting
    if setting is not False:
        return ssl_.create_default_context()
    ctx = ssl_.SSLContext(ssl_.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl_.CERT_NONE
    return ctx
