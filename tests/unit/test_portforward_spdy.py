"""SPDY/3.1 framing of the kubelet's port forwarding (kubelet/spdy.py) and its port query parsing."""
from __future__ import annotations

import struct
import zlib

import pytest

from kubelet import spdy
from kubelet.portforward import parse_ports


def client_syn_stream(stream_id: int, headers: dict[str, str], compressor: "zlib._Compress") -> bytes:
    """A SYN_STREAM as a SPDY/3 client writes it: built here independently of the module under test."""
    raw = struct.pack(">I", len(headers))
    for k, v in headers.items():
        raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
    block = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
    return struct.pack(">HHI", 0x8003, 1, len(payload)) + payload


def test_dictionary_is_the_spdy3_one() -> None:
    # size and checksum of the SPDY/3 header dictionary (zlib puts the checksum in every first header block)
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"utf-,*,enq=0.")


def test_frames_split_and_joined_arbitrarily() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, zdict=spdy.DICTIONARY)
    wire = (client_syn_stream(1, {"streamtype": "error", "port": "80", "requestid": "0"}, compressor)
            + client_syn_stream(3, {"streamtype": "data", "port": "80", "requestid": "0"}, compressor)
            + spdy.data(3, b"GET / HTTP/1.0\r\n\r\n") + spdy.data(3, b"", fin=True)
            + struct.pack(">HHII", 0x8003, spdy.PING, 4, 7))
    for step in (1, 5, len(wire)):  # byte by byte, in odd pieces, all at once: the same frames
        reader, codec, frames = spdy.FrameReader(), spdy.HeaderCodec(), []
        for i in range(0, len(wire), step):
            frames += reader.feed(wire[i:i + step])
        assert [type(f).__name__ for f in frames] == ["ControlFrame", "ControlFrame", "DataFrame", "DataFrame",
                                                      "ControlFrame"]
        syns = [spdy.parse_syn_stream(f, codec) for f in frames[:2]]  # type: ignore[arg-type]
        assert [(s.stream_id, s.header("streamType"), s.header("port"), s.header("requestId")) for s in syns] == \
            [(1, "error", "80", "0"), (3, "data", "80", "0")]
        data, fin = frames[2], frames[3]
        assert isinstance(data, spdy.DataFrame) and isinstance(fin, spdy.DataFrame)
        assert (data.stream_id, data.data, data.fin, fin.data, fin.fin) == (3, b"GET / HTTP/1.0\r\n\r\n", False,
                                                                            b"", True)
        ping = frames[4]
        assert isinstance(ping, spdy.ControlFrame)
        assert spdy.ping_reply(ping) == struct.pack(">HHII", 0x8003, spdy.PING, 4, 7)


def test_syn_reply_headers_decode_with_a_shared_zlib_context() -> None:
    codec = spdy.HeaderCodec()
    peer = zlib.decompressobj(zdict=spdy.DICTIONARY)  # the client's one decompressor for the whole connection
    for stream_id in (1, 3, 5):
        frame = spdy.syn_reply(stream_id, {"X-Test": f"v{stream_id}"}, codec)
        first, flags_length = struct.unpack_from(">II", frame)
        assert first == (0x8003 << 16) | spdy.SYN_REPLY and flags_length == len(frame) - 8
        assert struct.unpack_from(">I", frame, 8)[0] == stream_id
        raw = peer.decompress(frame[12:])
        assert raw == struct.pack(">II", 1, 6) + b"x-test" + struct.pack(">I", 2) + f"v{stream_id}".encode()


def test_multi_valued_header_and_broken_input() -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 15, zdict=spdy.DICTIONARY)
    frame = spdy.FrameReader().feed(client_syn_stream(5, {"port": "80\x00443"}, compressor))[0]
    assert isinstance(frame, spdy.ControlFrame)
    assert spdy.parse_syn_stream(frame, spdy.HeaderCodec()).headers == {"port": ["80", "443"]}
    with pytest.raises(spdy.ProtocolError, match="bad header block"):
        spdy.HeaderCodec().decode(b"not zlib at all")
    with pytest.raises(spdy.ProtocolError, match="unsupported SPDY version 2"):
        spdy.FrameReader().feed(struct.pack(">HHI", 0x8002, 1, 0))


def test_rst_and_goaway_frames() -> None:
    assert spdy.rst_stream(3, spdy.REFUSED_STREAM) == struct.pack(">HHIII", 0x8003, 3, 8, 3, 3)
    assert spdy.goaway(9) == struct.pack(">HHIII", 0x8003, 7, 8, 9, 0)
    frame = spdy.FrameReader().feed(spdy.rst_stream(3, spdy.CANCEL))[0]
    assert isinstance(frame, spdy.ControlFrame) and spdy.stream_id_of(frame) == 3


@pytest.mark.parametrize("values,ports", [(["80"], [80]), (["80,443", "8080"], [80, 443, 8080]),
                                          (["65535"], [65535])])
def test_port_query(values: list[str], ports: list[int]) -> None:
    assert parse_ports(values) == ports


@pytest.mark.parametrize("values,message", [([], 'query parameter "port" is required'),
                                            (["0"], 'unable to parse "0" as a port'),
                                            (["80,x"], 'unable to parse "x" as a port'),
                                            (["65536"], 'unable to parse "65536" as a port')])
def test_bad_port_query(values: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ports(values)
