"""The kubelet's httpGet probe (kubelet/httpprobe.py) against real servers on loopback: what passes, what a failure
says (Kubernetes' words), what the server receives, and HTTPS without checking the certificate."""
from __future__ import annotations

import asyncio
import ssl
import time
from typing import AsyncIterator

import pytest
from aiohttp import web

from kubelet.httpprobe import probe
from tests.support.controlplane import make_test_pki
from tests.util import free_port


class Server:
    def __init__(self) -> None:
        self.requests: list[web.Request] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        if request.path == "/moved":
            return web.Response(status=302, headers={"Location": "http://elsewhere.invalid/"})
        if request.path == "/broken":
            return web.Response(status=500)
        return web.Response(text="ok")


async def serve(server: Server, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    return runner, port


@pytest.fixture
async def http() -> AsyncIterator[tuple[Server, int]]:
    server = Server()
    runner, port = await serve(server)
    try:
        yield server, port
    finally:
        await runner.cleanup()


async def test_a_success_or_redirect_passes_and_an_error_status_fails(http: tuple[Server, int]) -> None:
    server, port = http
    assert await probe("127.0.0.1", port, "/healthz", False, [], 1) == (True, "")
    assert await probe("127.0.0.1", port, "/moved", False, [], 1) == (True, "")  # not followed
    assert await probe("127.0.0.1", port, "/broken", False, [], 1) == (False, "HTTP probe failed with statuscode: 500")
    assert [r.path for r in server.requests] == ["/healthz", "/moved", "/broken"]


async def test_the_server_gets_kubernetes_headers_and_the_pod_s_own(http: tuple[Server, int]) -> None:
    server, port = http
    assert (await probe("127.0.0.1", port, "ready", False, [("X-Custom", "yes")], 1))[0]
    first = server.requests[0]
    assert first.path == "/ready"
    assert first.headers["Host"] == f"127.0.0.1:{port}"
    assert first.headers["User-Agent"] == "kube-probe/1.32"
    assert first.headers["X-Custom"] == "yes"
    assert (await probe("127.0.0.1", port, "/a b", False, [("Host", "app.example"), ("User-Agent", "mine")], 1))[0]
    second = server.requests[1]
    assert second.path == "/a b" and second.raw_path == "/a%20b"
    assert second.headers["Host"] == "app.example" and second.headers["User-Agent"] == "mine"


async def test_refused_silent_and_closing_servers_fail_with_what_happened() -> None:
    port = free_port()
    ok, message = await probe("127.0.0.1", port, "/", False, [], 1)
    assert (ok, message) == (False, f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: connect: '
                                    'connection refused')

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # the request, then nothing
        await asyncio.sleep(30)

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        writer.close()

    for handler, expected in ((silent, "context deadline exceeded"), (closing, "EOF")):
        tcp = await asyncio.start_server(handler, "127.0.0.1", 0)
        tcp_port = tcp.sockets[0].getsockname()[1]
        try:
            started = time.monotonic()
            ok, message = await probe("127.0.0.1", tcp_port, "/", False, [], 0.5)
            assert not ok and message == f'Get "http://127.0.0.1:{tcp_port}/": {expected}'
            assert time.monotonic() - started < 5
        finally:
            tcp.close()


async def test_https_passes_without_checking_the_certificate(tmp_path: object) -> None:
    pki = make_test_pki(str(tmp_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert("apiserver"), pki.key("apiserver"))  # of a CA the probe does not know
    server = Server()
    runner, port = await serve(server, context)
    try:
        assert await probe("127.0.0.1", port, "/", True, [], 2) == (True, "")
        assert await probe("127.0.0.1", port, "/broken", True, [], 2) == (False,
                                                                          "HTTP probe failed with statuscode: 500")
        ok, message = await probe("127.0.0.1", port, "/", False, [], 2)  # plain HTTP to a TLS port
        assert not ok and message.startswith(f'Get "http://127.0.0.1:{port}/": ')
    finally:
        await runner.cleanup()
