"""pods/portforward over a plain HTTP upgrade to SPDY/3.1 (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version:
portforward.k8s.io`): what client-go speaks when the WebSocket tunnel is off (KUBECTL_PORT_FORWARD_WEBSOCKETS=false,
older kubectl, other client-go tools).

After the 101 answer the connection carries SPDY frames as a byte stream. aiohttp only treats `websocket`
upgrades as such, so the connection's later bytes are taken from its protocol with a payload parser of our own
(the hook aiohttp's own WebSocketResponse uses). The bytes go unchanged to the kubelet's SPDY-over-WebSocket
tunnel and its messages come back as bytes: one SPDY session between the client and the kubelet.
"""
from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from .shutdown import Interrupted, until_shutdown

PROTOCOL = "portforward.k8s.io"


def wants_spdy(request: web.Request) -> bool:
    protocols = {p.strip() for v in request.headers.getall("X-Stream-Protocol-Version", []) for p in v.split(",")}
    return request.headers.get("Upgrade", "").lower() == "spdy/3.1" and PROTOCOL in protocols


class _RawBytes:
    """aiohttp payload-parser interface: every byte the client sends after the upgrade, into a queue."""

    def __init__(self, queue: asyncio.Queue[bytes | None]) -> None:
        self.queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)


async def bridge(request: web.Request, kubelet: aiohttp.ClientWebSocketResponse) -> web.StreamResponse:
    """Answer 101 and pass bytes between the upgraded connection and the kubelet's tunnel until one side ends."""
    incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
    request.protocol.set_parser(_RawBytes(incoming))  # type: ignore[arg-type]
    resp = web.StreamResponse(status=101, headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                                   "X-Stream-Protocol-Version": PROTOCOL})
    resp.force_close()  # the connection is SPDY's now: never another HTTP request on it
    await resp.prepare(request)

    async def upstream() -> None:
        while (data := await incoming.get()) is not None:
            await kubelet.send_bytes(data)
        await kubelet.close()

    async def downstream() -> None:
        async for msg in kubelet:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await resp.write(msg.data)

    up = asyncio.create_task(upstream())
    try:
        await until_shutdown(request, downstream())
    except (ConnectionResetError, aiohttp.ClientConnectionError):
        pass  # one side went away while data was on its way: the other is closed with it
    except Interrupted:
        pass  # server shutdown: the connection closes (SPDY has no close of its own to send here)
    finally:
        up.cancel()
    return resp
