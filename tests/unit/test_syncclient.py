"""pklib.syncclient.SyncClient's connection handling, against small HTTP servers on loopback."""
from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from pklib.errors import ApiError, ConnectionFailed
from pklib.syncclient import SyncClient
from tests.util import free_port


class ClosingServer:
    """Answers each request with a JSON body and `keep-alive`, then closes the connection anyway (as a server
    whose keep-alive timeout passed does): the client finds out only when it next uses that connection."""

    def __init__(self, status: int = 200, body: bytes = b'{"kind":"ConfigMap"}') -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.status, self.body = status, body
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                self.requests.append(head.split(b"\r\n", 1)[0])
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (self.status, len(self.body), self.body))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def server() -> Iterator[ClosingServer]:
    s = ClosingServer()
    yield s
    s.close()


def test_a_connection_the_server_closed_is_replaced_once(server: ClosingServer) -> None:
    with SyncClient(f"http://127.0.0.1:{server.port}", "t0ken") as api:
        for _ in range(3):
            assert api.request("GET", "/api/v1/namespaces/x/configmaps/y") == {"kind": "ConfigMap"}
    assert server.connections == 3
    assert server.requests == [b"GET /api/v1/namespaces/x/configmaps/y HTTP/1.1"] * 3


def test_query_parameters_are_encoded_and_unset_ones_left_out(server: ClosingServer) -> None:
    with SyncClient(f"http://127.0.0.1:{server.port}") as api:
        api.request("GET", "/api/v1/pods", params={"labelSelector": "app in (a, b)", "limit": 5, "continue": None})
    assert server.requests == [b"GET /api/v1/pods?labelSelector=app%20in%20%28a%2C%20b%29&limit=5 HTTP/1.1"]


def test_an_error_answer_without_a_status_becomes_one() -> None:
    s = ClosingServer(status=503, body=b"overloaded")
    try:
        with SyncClient(f"http://127.0.0.1:{s.port}") as api:
            with pytest.raises(ApiError) as e:
                api.request("GET", "/api")
    finally:
        s.close()
    assert (e.value.code, e.value.reason, e.value.message) == (503, "ServiceUnavailable", "overloaded")


def test_nothing_listening_is_a_refused_connection() -> None:
    with SyncClient(f"http://127.0.0.1:{free_port()}") as api:
        with pytest.raises(ConnectionFailed) as e:
            api.request("GET", "/api")
    assert e.value.refused and "cannot reach the API server" in str(e.value)
