"""Minimal SPDY/3.1 framing: what the kubelet needs to serve `kubectl port-forward` (server side only).

kubectl (client-go) speaks SPDY/3.1 for port forwarding, tunnelled in WebSocket binary messages (subprotocol
`SPDY/3.1+portforward.k8s.io`): the WebSocket carries a plain byte stream, SPDY frames may be split across
messages or share one. The client opens streams (SYN_STREAM, headers zlib-compressed with the SPDY/3
dictionary, one compression context per direction for the whole connection), sends DATA frames, half-closes
with the FIN flag, resets with RST_STREAM and pings every few seconds. The server answers each stream with a
SYN_REPLY and never opens streams itself. Flow control (WINDOW_UPDATE) is not used by client-go's peer
(moby/spdystream) and is ignored here too.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR = 1, 2, 3, 5, 6
MAX_FRAME = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20  # decompressed; a peer sending more is broken or hostile


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3: the connection cannot go on."""


def _dictionary() -> bytes:
    """The zlib dictionary of SPDY/3 header blocks (draft 3, section 2.6.10.1): length-prefixed common header
    names and values, then a run of common value text. Both ends must use exactly these bytes."""
    words = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
             "accept-ranges age allow authorization cache-control connection content-base content-encoding "
             "content-language content-length content-location content-md5 content-range content-type date etag "
             "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
             "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
             "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning "
             "www-authenticate method get status").split() + ["200 OK"] + \
        "version HTTP/1.1 url public set-cookie keep-alive origin".split()
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
            "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()


DICTIONARY = _dictionary()


@dataclass
class ControlFrame:
    type: int
    flags: int
    payload: bytes


@dataclass
class DataFrame:
    stream_id: int
    flags: int
    data: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


Frame = ControlFrame | DataFrame


class FrameReader:
    """Frames out of a byte stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            first, flags_length = struct.unpack_from(">II", self._buf)
            length = flags_length & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = flags_length >> 24
            if first & 0x80000000:
                version, type_ = (first >> 16) & 0x7FFF, first & 0xFFFF
                if version != VERSION:
                    raise ProtocolError(f"unsupported SPDY version {version}")
                frames.append(ControlFrame(type_, flags, payload))
            else:
                frames.append(DataFrame(first & 0x7FFFFFFF, flags, payload))
        return frames


class HeaderCodec:
    """Header blocks of one connection: a compressor for what we send, a decompressor for what we receive."""

    def __init__(self) -> None:
        self._out = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)
        self._in = zlib.decompressobj(zdict=DICTIONARY)

    def encode(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        # one zlib stream per direction: each block ends with a sync flush so the peer can decode it at once
        return self._out.compress(raw) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> dict[str, list[str]]:
        try:
            raw = self._in.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"bad header block: {e}") from None
        if self._in.unconsumed_tail:
            raise ProtocolError("header block too large")
        try:
            (count,), pos = struct.unpack_from(">I", raw), 4
            headers: dict[str, list[str]] = {}
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                (v,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4:pos + 4 + v].decode()
                pos += 4 + v
                headers.setdefault(name, []).extend(value.split("\x00"))  # NUL separates several values
        except (struct.error, UnicodeDecodeError) as e:
            raise ProtocolError(f"bad header block: {e}") from None
        return headers


@dataclass
class SynStream:
    stream_id: int
    flags: int
    headers: dict[str, list[str]]

    def header(self, name: str) -> str:
        return (self.headers.get(name.lower()) or [""])[0]


def parse_syn_stream(frame: ControlFrame, codec: HeaderCodec) -> SynStream:
    if len(frame.payload) < 10:
        raise ProtocolError("short SYN_STREAM")
    (stream_id,) = struct.unpack_from(">I", frame.payload)
    return SynStream(stream_id & 0x7FFFFFFF, frame.flags, codec.decode(frame.payload[10:]))


def stream_id_of(frame: ControlFrame) -> int:
    """The stream a RST_STREAM / HEADERS / WINDOW_UPDATE frame is about."""
    if len(frame.payload) < 4:
        raise ProtocolError("short control frame")
    return int(struct.unpack_from(">I", frame.payload)[0] & 0x7FFFFFFF)


def control(type_: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, type_, (flags << 24) | len(payload)) + payload


def syn_reply(stream_id: int, headers: dict[str, str], codec: HeaderCodec, fin: bool = False) -> bytes:
    return control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + codec.encode(headers))


def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
    """One DATA frame (payloads above the 16 MiB frame limit are the caller's to split)."""
    return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload


def rst_stream(stream_id: int, status: int) -> bytes:
    return control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def ping_reply(frame: ControlFrame) -> bytes:
    """A PING is answered by sending it back unchanged."""
    return control(PING, 0, frame.payload[:4])


def goaway(last_stream_id: int, status: int = 0) -> bytes:
    return control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))
