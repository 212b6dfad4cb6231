"""The httpGet probe: one GET on a fresh connection; a status of 200-399 passes (Kubernetes' pkg/probe/http; a
redirect is not followed and passes too).

h11 speaks the HTTP, asyncio's streams carry it. Probes went through an aiohttp ClientSession before, which took
~0.96 ms of the kubelet's CPU per probe against ~0.67 ms this way (`python -m bench.probes`); a node of 100 pods
each probed every 10 s sends 10 a second.
"""
from __future__ import annotations

import asyncio
import functools
import os
import ssl
import string
from urllib.parse import quote

import h11

from pklib.timeouts import wait_for

USER_AGENT = "kube-probe/1.32"


@functools.cache
def _insecure_context() -> ssl.SSLContext:
    """HTTPS probes do not check the certificate, as Kubernetes' (InsecureSkipVerify)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _DialError(Exception):
    """No connection (Go's net.Dial error text: `dial tcp HOST:PORT: connect: connection refused`)."""


async def probe(host: str, port: int, path: str, https: bool, headers: list[tuple[str, str]],
                timeout: float) -> tuple[bool, str]:
    """(passed, what failed in Kubernetes' words)."""
    target = quote(path if path.startswith("/") else "/" + path, safe=string.punctuation)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"{'https' if https else 'http'}://{authority}{target}"
    try:
        status = await wait_for(_get(host, port, target, authority, https, headers), timeout)
    except asyncio.TimeoutError:
        return False, f'Get "{url}": context deadline exceeded'
    except (_DialError, OSError, h11.ProtocolError) as e:  # refused, reset, TLS failure, not HTTP
        return False, f'Get "{url}": {e or type(e).__name__}'
    if 200 <= status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {status}"


async def _get(host: str, port: int, target: str, authority: str, https: bool,
               headers: list[tuple[str, str]]) -> int:
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=_insecure_context() if https else None)
    except ssl.SSLError:
        raise
    except OSError as e:
        reason = os.strerror(e.errno).lower() if e.errno else str(e)
        raise _DialError(f"dial tcp {authority}: connect: {reason}") from None
    try:
        given = {name.lower() for name, _ in headers}
        defaults = [(name, value) for name, value in (("Host", authority), ("User-Agent", USER_AGENT),
                                                      ("Accept", "*/*")) if name.lower() not in given]
        conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(method="GET", target=target,
                                           headers=[*defaults, *headers, ("Connection", "close")])))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("EOF")  # closed before its answer's head (Go's word for it)
                conn.receive_data(data)
            elif isinstance(event, h11.Response):  # 1xx (h11.InformationalResponse) are passed over
                return int(event.status_code)
    finally:
        writer.close()
