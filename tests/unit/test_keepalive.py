"""The supervisor's probe GETs reuse one connection per server (no TLS handshake every 10 s), survive the server
restarting between two probes, and report what the server answered. Against a real HTTP server on loopback."""
from __future__ import annotations

import http.server
import socket
import threading
from typing import Iterator

import pytest

from pkctl.cluster import keepalive


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections alive

    def do_GET(self) -> None:
        body = b"ok" if self.path == "/healthz" else b"[-]etcd: not reachable\nmore\n"
        self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.connections = 0
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        self.connections += 1
        assert isinstance(request, socket.socket)
        self.sockets.append(request)
        super().process_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a connection reset by stop()

    def stop(self) -> None:
        """As the server's process ending would: the listener and every open connection close."""
        self.shutdown()
        self.server_close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(0)
    yield s
    s.stop()


def test_probes_of_one_server_share_a_connection(server: Server) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    assert [keepalive.get(url + "/healthz") for _ in range(3)] == [(200, b"ok")] * 3
    assert server.connections == 1
    # an answer other than 200 comes back with its body (the supervisor shows its first line)
    assert keepalive.get(url + "/readyz") == (503, b"[-]etcd: not reachable\nmore\n")
    assert server.connections == 1


def test_a_server_that_restarted_between_two_probes_still_answers_the_next(server: Server) -> None:
    port = server.server_address[1]
    assert keepalive.get(f"http://127.0.0.1:{port}/healthz") == (200, b"ok")
    server.stop()  # the kept connection is closed by the server going away
    again = Server(port)
    try:
        assert keepalive.get(f"http://127.0.0.1:{port}/healthz") == (200, b"ok")
        assert again.connections == 1
    finally:
        again.stop()
    with pytest.raises(OSError):  # nothing listens any more: a clear failure, not a hang
        keepalive.get(f"http://127.0.0.1:{port}/healthz")
