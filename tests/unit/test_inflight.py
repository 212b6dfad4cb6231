"""The apiserver's limit on mutating requests in flight (apiserver/inflight.py), on a real aiohttp server whose
handlers stand in for the API's: writes over the limit wait their turn, reads and long-running requests never
wait, and a client sending its body slowly holds no seat."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from apiserver import bodies
from apiserver.inflight import Seats
from tests.util import wait_for


class Backend:
    """Handlers that hold every write until `release` is set, counting how many are inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0
        self.bodies: list[bytes] = []
        self.release = asyncio.Event()

    async def write(self, request: web.Request) -> web.Response:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            self.bodies.append(await bodies.read_raw(request))
            await self.release.wait()
        finally:
            self.inside -= 1
        return web.json_response({"ok": True})

    async def read(self, request: web.Request) -> web.Response:
        return web.json_response({"inside": self.inside})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Backend, str]]:
    backend = Backend()
    app = web.Application(middlewares=[Seats(2).middleware()])
    app.router.add_post("/api/v1/namespaces/{ns}/pods", backend.write)
    app.router.add_post("/api/v1/namespaces/{ns}/pods/{name}/exec", backend.write)
    app.router.add_get("/api/v1/namespaces/{ns}/pods", backend.read)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield backend, f"http://127.0.0.1:{port}"
    finally:
        backend.release.set()
        await runner.cleanup()


async def test_writes_over_the_limit_wait_while_reads_are_answered(served: tuple[Backend, str]) -> None:
    backend, url = served
    async with aiohttp.ClientSession() as http:
        async def create(i: int) -> int:
            async with http.post(f"{url}/api/v1/namespaces/a/pods", data=f'{{"n": {i}}}') as r:
                return r.status

        creates = [asyncio.create_task(create(i)) for i in range(5)]

        async def two_inside() -> bool:
            return backend.inside == 2
        await wait_for(two_inside, 10, message="two writes in their handlers")
        # a read is answered at once, and while it went there and back the three other writes stayed outside
        async with http.get(f"{url}/api/v1/namespaces/a/pods") as r:
            assert (await r.json()) == {"inside": 2}
        assert backend.inside == 2 and not any(t.done() for t in creates)

        backend.release.set()
        assert await asyncio.gather(*creates) == [200] * 5
    assert backend.most_inside == 2
    assert sorted(backend.bodies) == sorted(f'{{"n": {i}}}'.encode() for i in range(5))  # each handler got its body


async def test_long_running_requests_take_no_seat(served: tuple[Backend, str]) -> None:
    backend, url = served
    async with aiohttp.ClientSession() as http:
        creates = [asyncio.create_task(http.post(f"{url}/api/v1/namespaces/a/pods", data=b"{}")) for _ in range(2)]
        execs = [asyncio.create_task(http.post(f"{url}/api/v1/namespaces/a/pods/p/exec", data=b"")) for _ in range(2)]

        async def all_inside() -> bool:
            return backend.inside == 4
        await wait_for(all_inside, 10, message="two creates and two execs in their handlers at once (limit 2)")
        backend.release.set()
        for resp in await asyncio.gather(*creates, *execs):
            assert resp.status == 200
            resp.release()


async def test_a_client_sending_its_body_slowly_holds_no_seat(served: tuple[Backend, str]) -> None:
    backend, url = served
    host, port = url.removeprefix("http://").split(":")
    slow = []
    for _ in range(2):  # as many as there are seats
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /api/v1/namespaces/a/pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10\r\n\r\n{\"n\":")  # 5 of its 10 bytes
        await writer.drain()
        slow.append((reader, writer))
    try:
        async with aiohttp.ClientSession() as http:
            create = asyncio.create_task(http.post(f"{url}/api/v1/namespaces/a/pods", data=b"{}"))

            async def one_inside() -> bool:
                return backend.inside == 1
            await wait_for(one_inside, 10, message="the whole request in its handler past the two slow ones")
            backend.release.set()
            resp = await create
            assert resp.status == 200
            resp.release()
            for reader, writer in slow:
                writer.write(b" 1}     ")
                await writer.drain()
                assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    finally:
        for _, writer in slow:
            writer.close()
