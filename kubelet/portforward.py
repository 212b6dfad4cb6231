"""The kubelet's port forwarding: `GET /portForward/{namespace}/{pod}` (WebSocket), what pods/portforward relays to.

Each forwarded connection is a TCP connection to 127.0.0.1:PORT made from inside the pod's network namespace
(so a server bound to the pod's loopback works, as in Kubernetes). Two wire protocols, chosen by the
WebSocket subprotocol:

- `SPDY/3.1+portforward.k8s.io` (kubectl): SPDY/3.1 in the WebSocket's binary messages. Per local
  connection the client opens an error stream and a data stream with headers `streamtype`, `port` and
  `requestid`; the data stream carries the bytes both ways (FIN = half-close), the error stream a message if
  forwarding failed. Many connections share one WebSocket.
- `v4.channel.k8s.io` (or no subprotocol; pkctl, the Python client): `?port=P` (repeatable, or comma-separated)
  names the ports; port i has data channel 2i and error channel 2i+1, every message starts with its channel
  byte, and the first message on each channel carries the port as 2 bytes little-endian. One connection per
  port; the WebSocket closes when all of them ended.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web

from kubelet import spdy
from kubelet.network.netns import in_netns
from kubelet.host import HostError, PodHost
from pklib.timeouts import wait_for

log = logging.getLogger("kubelet.portforward")
SPDY_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
V4_PROTOCOL = "v4.channel.k8s.io"
PROTOCOLS = (SPDY_PROTOCOL, V4_PROTOCOL)
CHUNK = 32 * 1024
STREAM_CREATION_TIMEOUT = 30.0  # seconds between a connection's first and second stream (the kubelet's default)

Connector = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class ForwardError(Exception):
    """Why a port could not be reached; sent to the client on the error stream."""


def parse_ports(values: list[str]) -> list[int]:
    """`?port=80&port=443` or `?port=80,443` (as the kubelet accepts them); ValueError with the reason."""
    if not values:
        raise ValueError('query parameter "port" is required')
    ports = []
    for value in values:
        for part in value.split(","):
            if not part.isdigit() or not 0 < int(part) < 65536:
                raise ValueError(f'unable to parse "{part}" as a port: must be a number from 1 to 65535')
            ports.append(int(part))
    return ports


async def connect_in_netns(netns: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    try:
        # a socket belongs to the namespace it was created in; it is then used from the event loop like any other
        sock = await loop.run_in_executor(
            None, in_netns, netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    except OSError as e:
        raise ForwardError(str(e)) from None
    sock.setblocking(False)
    try:
        await wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10)
    except (OSError, asyncio.TimeoutError) as e:
        sock.close()
        # asyncio words a refused connect as "Connect call failed (...)": the errno says it plainly
        reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else "timed out"
        raise ForwardError(f"failed to connect to localhost:{port} inside the pod's network namespace: "
                           f"{reason.lower()}") from None
    return await asyncio.open_connection(sock=sock)


async def handle(host: PodHost, request: web.Request) -> web.StreamResponse:
    """The route handler: find the pod's network namespace, then serve the protocol the client chose."""
    ns, name = request.match_info["namespace"], request.match_info["pod"]
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
    ready = ws.can_prepare(request)
    if not ready.ok:
        raise _error(400, f"port forwarding needs a WebSocket upgrade with subprotocol {SPDY_PROTOCOL} or "
                          f"{V4_PROTOCOL}")
    ports: list[int] = []
    if ready.protocol != SPDY_PROTOCOL:  # no subprotocol at all means the v4 channels, as in Kubernetes
        try:
            ports = parse_ports(request.query.getall("port", []))
        except ValueError as e:
            raise _error(400, str(e)) from None
    netns = await _pod_netns(host, ns, name)
    label = f"{ns}/{name}"

    async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await connect_in_netns(netns, port)
        except ForwardError as e:
            raise ForwardError(f"error forwarding port {port} to pod {label}: {e}") from None

    await ws.prepare(request)
    try:
        if ws.ws_protocol == SPDY_PROTOCOL:
            await SpdySession(ws, connect).run()
        else:
            await serve_v4(ws, ports, connect)
    except ConnectionResetError:
        pass  # the API server (or the user's client behind it) went away
    finally:
        await ws.close()
    return ws


def _error(code: int, message: str) -> web.HTTPException:
    reason = {400: "BadRequest", 404: "NotFound"}.get(code, "InternalError")
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message,
            "code": code}
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound}.get(code, web.HTTPInternalServerError)
    return cls(text=json.dumps(body), content_type="application/json")


async def _pod_netns(host: PodHost, ns: str, name: str) -> str:
    try:
        return await host.pod_netns(ns, name)
    except HostError as e:
        raise _error(e.code, e.message) from None


async def _copy_out(reader: asyncio.StreamReader, send: Callable[[bytes], Awaitable[None]]) -> None:
    while chunk := await reader.read(CHUNK):
        await send(chunk)


# --- v4 channel protocol ---------------------------------------------------------------------------------

def _channel_sender(ws: web.WebSocketResponse, channel: int) -> Callable[[bytes], Awaitable[None]]:
    async def send(chunk: bytes) -> None:
        await ws.send_bytes(bytes([channel]) + chunk)
    return send


async def serve_v4(ws: web.WebSocketResponse, ports: list[int], connect: Connector) -> None:
    for i, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        await ws.send_bytes(bytes([2 * i]) + prefix)
        await ws.send_bytes(bytes([2 * i + 1]) + prefix)
    # connected before the client's bytes are read, so none of them can arrive ahead of their connection
    results = await asyncio.gather(*(connect(p) for p in ports), return_exceptions=True)
    writers: dict[int, asyncio.StreamWriter] = {}
    outbound: list[Awaitable[None]] = []
    for i, result in enumerate(results):
        if isinstance(result, ForwardError):
            await ws.send_bytes(bytes([2 * i + 1]) + str(result).encode())
        elif isinstance(result, BaseException):
            raise result
        else:
            reader, writers[2 * i] = result
            outbound.append(_copy_out(reader, _channel_sender(ws, 2 * i)))

    async def inbound() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            writer = writers.get(msg.data[0])
            if writer is not None and not writer.is_closing():
                writer.write(msg.data[1:])
                await writer.drain()

    reading: asyncio.Future[Any] = asyncio.create_task(inbound())
    forwards: asyncio.Future[Any] = asyncio.gather(*outbound)
    try:
        # the socket ends when every port's connection ended, or when the client hangs up
        await asyncio.wait([reading, forwards], return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        forwards.cancel()
        await asyncio.gather(reading, forwards, return_exceptions=True)
        for writer in writers.values():
            writer.close()


# --- SPDY/3.1 ---------------------------------------------------------------------------------------------

@dataclass
class _Pair:
    """The data and error streams of one forwarded connection (paired by the `requestid` header)."""
    port: int
    data_id: int = 0
    error_id: int = 0
    writer: asyncio.StreamWriter | None = None
    pending: list[bytes] = field(default_factory=list)   # client bytes that came before the pod connection
    client_done: bool = False                              # the client half-closed the data stream
    task: asyncio.Task[None] | None = None


class SpdySession:
    def __init__(self, ws: web.WebSocketResponse, connect: Connector) -> None:
        self.ws = ws
        self.connect = connect
        self.codec = spdy.HeaderCodec()
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self.last_stream = 0
        self._send_lock = asyncio.Lock()

    async def send(self, frame: bytes) -> None:
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_bytes(frame)

    async def run(self) -> None:
        reader = spdy.FrameReader()
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                for frame in reader.feed(msg.data):
                    if not await self._handle(frame):
                        return
        except spdy.ProtocolError as e:
            log.warning("port-forward: %s", e)
            await self.send(spdy.goaway(self.last_stream, 1))
        finally:
            for pair in list(self.pairs.values()):
                if pair.task:
                    pair.task.cancel()
                if pair.writer:
                    pair.writer.close()

    async def _handle(self, frame: spdy.Frame) -> bool:
        """One frame; False when the client said GOAWAY."""
        if isinstance(frame, spdy.DataFrame):
            await self._data(frame)
        elif frame.type == spdy.SYN_STREAM:
            await self._syn_stream(spdy.parse_syn_stream(frame, self.codec))
        elif frame.type == spdy.RST_STREAM:
            pair = self.by_stream.get(spdy.stream_id_of(frame))
            if pair is not None and pair.task is not None:
                pair.task.cancel()  # the client gave up on the connection: the pod side is closed
        elif frame.type == spdy.PING:
            await self.send(spdy.ping_reply(frame))
        elif frame.type == spdy.GOAWAY:
            return False
        elif frame.type == spdy.HEADERS:
            self.codec.decode(frame.payload[4:])  # keeps the shared decompression context in step
        return True  # SETTINGS, WINDOW_UPDATE: nothing to do without flow control

    async def _syn_stream(self, syn: spdy.SynStream) -> None:
        self.last_stream = max(self.last_stream, syn.stream_id)
        kind, port_text = syn.header("streamtype"), syn.header("port")
        if kind not in ("data", "error") or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            await self.send(spdy.rst_stream(syn.stream_id, spdy.REFUSED_STREAM))
            return
        # clients older than request ids sent the error stream, then the data stream two ids later
        request = syn.header("requestid") or str(syn.stream_id if kind == "error" else syn.stream_id - 2)
        pair = self.pairs.get(request)
        if pair is None:
            pair = self.pairs[request] = _Pair(int(port_text))
            pair.task = asyncio.create_task(self._expire(request, pair))
        if (pair.data_id if kind == "data" else pair.error_id):
            await self.send(spdy.rst_stream(syn.stream_id, spdy.PROTOCOL_ERROR))
            return
        if kind == "data":
            pair.data_id = syn.stream_id
        else:
            pair.error_id = syn.stream_id
        self.by_stream[syn.stream_id] = pair
        await self.send(spdy.syn_reply(syn.stream_id, {}, self.codec))
        if pair.data_id and pair.error_id:
            if pair.task is not None:
                pair.task.cancel()  # the pair is complete: no expiry
            pair.task = asyncio.create_task(self._forward(request, pair))

    async def _expire(self, request: str, pair: _Pair) -> None:
        """A connection whose second stream never comes is given up, as the kubelet does after 30 s."""
        await asyncio.sleep(STREAM_CREATION_TIMEOUT)
        if pair.error_id:
            await self.send(spdy.data(pair.error_id, f"timed out waiting for the streams of request {request}"
                                      .encode(), fin=True))
        if pair.data_id:
            await self.send(spdy.data(pair.data_id, b"", fin=True))
        self._forget(request, pair)

    def _forget(self, request: str, pair: _Pair) -> None:
        self.pairs.pop(request, None)
        self.by_stream.pop(pair.data_id, None)
        self.by_stream.pop(pair.error_id, None)

    async def _data(self, frame: spdy.DataFrame) -> None:
        pair = self.by_stream.get(frame.stream_id)
        if pair is None or frame.stream_id != pair.data_id:
            return  # the error stream's FIN, or a stream already finished
        if pair.writer is None:
            pair.pending.append(frame.data)
            pair.client_done |= frame.fin
            return
        if pair.writer.is_closing():
            return
        if frame.data:
            pair.writer.write(frame.data)
            await pair.writer.drain()
        if frame.fin and pair.writer.can_write_eof():
            pair.writer.write_eof()  # the client will send no more: half-close towards the pod

    async def _forward(self, request: str, pair: _Pair) -> None:
        try:
            try:
                reader, writer = await self.connect(pair.port)
            except ForwardError as e:
                await self.send(spdy.data(pair.error_id, str(e).encode()))
                return
            pair.writer = writer
            try:
                for chunk in pair.pending:
                    writer.write(chunk)
                pair.pending.clear()
                if pair.client_done and writer.can_write_eof():
                    writer.write_eof()
                await _copy_out(reader, lambda chunk: self.send(spdy.data(pair.data_id, chunk)))
            except (ConnectionResetError, BrokenPipeError):
                pass  # the pod reset the connection: the client sees its end below
            finally:
                writer.close()
        finally:
            # FIN on both streams ends the client's side of this connection (it then resets the data stream)
            if not self.ws.closed:
                await self.send(spdy.data(pair.data_id, b"", fin=True))
                await self.send(spdy.data(pair.error_id, b"", fin=True))
            self._forget(request, pair)
