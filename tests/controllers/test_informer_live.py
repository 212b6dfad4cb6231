"""The informer against the real apiserver: list + watch into the indexed store, handlers, label selection."""
from __future__ import annotations

import asyncio
from typing import Any

from pklib.resources import must_lookup
from pklib.client import Client
from pklib.informer import Handler, Informer
from pklib.objects import key_of
from tests.support.controlplane import ApiServer
from tests.util import wait_for

CM = must_lookup("configmaps")


async def test_informer_follows_the_api(client: Client, namespace: str) -> None:
    await client.create(CM, {"metadata": {"name": "before", "labels": {"tier": "web"}}}, namespace)
    seen: list[tuple[str, str]] = []
    inf = Informer(client, CM, namespace)
    inf.add_handler(Handler(on_add=lambda o: seen.append(("add", key_of(o))),
                            on_update=lambda old, new: seen.append(("update", key_of(new))),
                            on_delete=lambda o: seen.append(("delete", key_of(o)))))
    task = asyncio.create_task(inf.run())
    try:
        await inf.wait_synced(10)
        assert inf.store.get(f"{namespace}/before")["metadata"]["labels"] == {"tier": "web"}

        await client.create(CM, {"metadata": {"name": "after", "labels": {"tier": "db"}}, "data": {"a": "1"}},
                            namespace)
        await client.patch(CM, "before", {"metadata": {"labels": {"tier": "db"}}}, namespace)
        await client.delete(CM, "after", namespace)

        async def caught_up() -> Any:
            return ("delete", f"{namespace}/after") in seen
        await wait_for(caught_up, message="watch events")
        assert seen == [("add", f"{namespace}/before"), ("add", f"{namespace}/after"),
                        ("update", f"{namespace}/before"), ("delete", f"{namespace}/after")]
        assert [key_of(o) for o in inf.store.by_index("label", "tier=db")] == [f"{namespace}/before"]
        assert inf.store.by_index("label", "tier=web") == []
        assert inf.relists == 1, "no relist while the watch is healthy"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_label_selected_informer_sees_only_matching_objects(client: Client, namespace: str) -> None:
    inf = Informer(client, CM, namespace, label_selector="tier=web")
    task = asyncio.create_task(inf.run())
    try:
        await inf.wait_synced(10)
        await client.create(CM, {"metadata": {"name": "web", "labels": {"tier": "web"}}}, namespace)
        await client.create(CM, {"metadata": {"name": "db", "labels": {"tier": "db"}}}, namespace)

        async def has_web() -> Any:
            return inf.store.get(f"{namespace}/web") is not None
        await wait_for(has_web, message="selected object cached")
        # Events arrive in order: once web2 is cached, db would have been too had it matched.
        await client.create(CM, {"metadata": {"name": "web2", "labels": {"tier": "web"}}}, namespace)
        await wait_for(lambda: _cached(inf, f"{namespace}/web2"), message="second selected object")
        assert inf.store.get(f"{namespace}/db") is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _cached(inf: Informer, key: str) -> bool:
    return inf.store.get(key) is not None


class CuttableProxy:
    """A loopback TCP proxy to the apiserver whose connections the test can cut, like a network drop."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_dropped_connection_resumes_from_last_resource_version(client: Client, namespace: str,
                                                                    apiserver: ApiServer) -> None:
    proxy = CuttableProxy(int(apiserver.url.rsplit(":", 1)[1]))
    await proxy.start()
    inf_client = Client(f"http://127.0.0.1:{proxy.port}", apiserver.token)
    inf = Informer(inf_client, CM, namespace, retry_delay=0.05)
    task = asyncio.create_task(inf.run())
    try:
        await inf.wait_synced(10)
        await client.create(CM, {"metadata": {"name": "one"}}, namespace)
        await wait_for(lambda: _cached(inf, f"{namespace}/one"), message="first object")
        proxy.cut()  # the watch connection drops
        await client.create(CM, {"metadata": {"name": "two"}}, namespace)
        await wait_for(lambda: _cached(inf, f"{namespace}/two"), message="object created around the drop")
        await client.delete(CM, "one", namespace)
        await wait_for(lambda: _not_cached(inf, f"{namespace}/one"), message="deletion after reconnecting")
        assert inf.relists == 1, "resumed the watch from its resourceVersion instead of relisting"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await inf_client.close()
        await proxy.stop()


async def _not_cached(inf: Informer, key: str) -> bool:
    return inf.store.get(key) is None
