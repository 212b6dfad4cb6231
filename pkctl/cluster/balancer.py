"""The API address of a highly available local cluster: a TCP load balancer in the supervisor.

With several control planes every client (kubelet, proxy, controllers, scheduler, pkctl, kubectl)
dials one address, the cluster's API port, and this balancer forwards each connection to a live
apiserver (round robin; a member that refused a connection is skipped for a while). Like k3s'
node-local balancer: no client needs to know the members, kubectl (one server URL per cluster)
keeps working when an apiserver dies, and TLS stays end to end (bytes are forwarded, not HTTP),
so the apiserver's serving certificate only has to cover the balancer's address.

When an apiserver dies, the connections it held are closed; clients reconnect through the
balancer (watches resume from their resourceVersion, as after any apiserver restart).
The balancer lives as long as the supervisor, which every component dies with anyway.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pklib.timeouts import wait_for

log = logging.getLogger("pkube.balancer")

CONNECT_TIMEOUT = 1.0
SKIP_AFTER_FAILURE = 2.0  # seconds a backend that refused a connection is tried last
CHUNK = 256 * 1024


class Balancer:
    def __init__(self, host: str, port: int, backends: list[tuple[str, int]]):
        if not backends:
            raise ValueError("a balancer needs at least one backend")
        self.host, self.port, self.backends = host, port, backends
        self._next = 0
        self._failed_at: dict[tuple[str, int], float] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        log.info("API balancer on %s:%d over %s", self.host, self.port,
                 ", ".join(f"{h}:{p}" for h, p in self.backends))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()

    def order(self, now: float) -> list[tuple[str, int]]:
        """The backends to try for the next connection: round robin, recently failed ones last."""
        n = len(self.backends)
        start, self._next = self._next, (self._next + 1) % n
        rotated = [self.backends[(start + i) % n] for i in range(n)]
        fresh = [b for b in rotated if now - self._failed_at.get(b, -1e9) >= SKIP_AFTER_FAILURE]
        return fresh + [b for b in rotated if b not in fresh]

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for backend in self.order(time.monotonic()):
            try:
                return await wait_for(asyncio.open_connection(*backend), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                self._failed_at[backend] = time.monotonic()
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            upstream = await self._open()
            if upstream is None:
                log.warning("no apiserver accepts connections; closing a client connection")
                return
            up_reader, up_writer = upstream
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            writer.close()
            self._conns.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error on either side, then close the writer (which ends the other direction)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
