"""The kubelet's SPDY port-forward session (kubelet/portforward.py SpdySession) driven frame by frame: a fake
WebSocket in place of the apiserver's, and a real loopback echo server in place of the pod."""
from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Any, AsyncIterator

import aiohttp
import pytest

from kubelet import portforward, spdy
from kubelet.portforward import ForwardError, SpdySession


class FakeWS:
    """Messages in through a queue, frames out decoded as they are sent."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.reader = spdy.FrameReader()
        self.frames: asyncio.Queue[spdy.Frame] = asyncio.Queue()
        self.closed = False

    async def send_bytes(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            self.frames.put_nowait(frame)

    def __aiter__(self) -> "FakeWS":
        return self

    async def __anext__(self) -> Any:
        data = await self.incoming.get()
        if data is None:
            raise StopAsyncIteration
        return aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, data, None)

    async def next_frame(self) -> spdy.Frame:
        return await asyncio.wait_for(self.frames.get(), 5)


class Client:
    """The client's side of the SPDY connection: its own header compression context."""

    def __init__(self, ws: FakeWS) -> None:
        self.ws = ws
        self.zout = zlib.compressobj(9, zlib.DEFLATED, 15, zdict=spdy.DICTIONARY)
        self.zin = zlib.decompressobj(zdict=spdy.DICTIONARY)

    def open(self, stream_id: int, **headers: str) -> None:
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        block = self.zout.compress(raw) + self.zout.flush(zlib.Z_SYNC_FLUSH)
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
        self.ws.incoming.put_nowait(struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(payload)) + payload)

    async def reply(self) -> int:
        """The SYN_REPLY (or RST_STREAM) the server answered with: (type, stream id)."""
        frame = await self.ws.next_frame()
        assert isinstance(frame, spdy.ControlFrame)
        if frame.type == spdy.SYN_REPLY:
            self.zin.decompress(frame.payload[4:])  # keep the shared context in step
        return frame.type


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data.upper())
        writer.close()  # after the client's half-close: the echo ends too
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def connector(echo_port: int, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if port != 80:
        raise ForwardError(f"failed to connect to localhost:{port}: connection refused")
    return await asyncio.open_connection("127.0.0.1", echo_port)


async def session(echo: int) -> tuple[FakeWS, Client, asyncio.Task[None]]:
    ws = FakeWS()
    s = SpdySession(ws, lambda port: connector(echo, port))  # type: ignore[arg-type]
    return ws, Client(ws), asyncio.create_task(s.run())


async def test_pair_forwards_both_ways_with_half_close(echo: int) -> None:
    ws, client, run = await session(echo)
    client.open(1, streamtype="error", port="80", requestid="0")
    # data sent before the pair is complete and connected is kept, not lost
    client.open(3, streamtype="data", port="80", requestid="0")
    ws.incoming.put_nowait(spdy.data(3, b"hello ") + spdy.data(3, b"pod", fin=True))
    assert [await client.reply(), await client.reply()] == [spdy.SYN_REPLY, spdy.SYN_REPLY]
    got, fins = b"", set[int]()
    while fins != {1, 3}:
        frame = await ws.next_frame()
        assert isinstance(frame, spdy.DataFrame)
        got += frame.data
        if frame.fin:
            fins.add(frame.stream_id)
    assert got == b"HELLO POD"
    ws.incoming.put_nowait(struct.pack(">HHII", 0x8003, spdy.PING, 4, 11))
    ping = await ws.next_frame()
    assert isinstance(ping, spdy.ControlFrame) and (ping.type, ping.payload) == (spdy.PING, struct.pack(">I", 11))
    ws.incoming.put_nowait(None)
    await asyncio.wait_for(run, 5)


async def test_refused_port_is_reported_on_the_error_stream(echo: int) -> None:
    ws, client, run = await session(echo)
    client.open(1, streamtype="error", port="81", requestid="7")
    client.open(3, streamtype="data", port="81", requestid="7")
    await client.reply(), await client.reply()
    frames = [await ws.next_frame() for _ in range(3)]
    assert all(isinstance(f, spdy.DataFrame) for f in frames)
    assert [(f.stream_id, f.data, f.fin) for f in frames] == [  # type: ignore[union-attr]
        (1, b"failed to connect to localhost:81: connection refused", False), (3, b"", True), (1, b"", True)]
    ws.incoming.put_nowait(None)
    await asyncio.wait_for(run, 5)


async def test_bad_streams_are_refused(echo: int) -> None:
    ws, client, run = await session(echo)
    client.open(1, streamtype="data", port="0")
    client.open(3, streamtype="bogus", port="80")
    client.open(5, port="80")
    assert [await client.reply() for _ in range(3)] == [spdy.RST_STREAM] * 3
    ws.incoming.put_nowait(None)
    await asyncio.wait_for(run, 5)


async def test_incomplete_pair_expires(echo: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portforward, "STREAM_CREATION_TIMEOUT", 0.05)
    ws, client, run = await session(echo)
    client.open(1, streamtype="error", port="80", requestid="3")
    assert await client.reply() == spdy.SYN_REPLY
    frame = await ws.next_frame()
    assert isinstance(frame, spdy.DataFrame) and frame.fin
    assert frame.data == b"timed out waiting for the streams of request 3"
    ws.incoming.put_nowait(None)
    await asyncio.wait_for(run, 5)
