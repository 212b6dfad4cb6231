"""Load: 50 concurrent clients writing for 60 s against a real apiserver on etcd, with watches open.

Each client (one in five on a new connection per request) loops over its own ConfigMaps and Pods (pods have no
node: no scheduler runs) doing creates, GETs, updates (PUT with the resourceVersion it read), merge patches,
strategic-merge patches and deletes, and now and then a read-modify-write of a few ConfigMaps that every client
shares (those PUTs meet each other: 409 Conflict is expected there and counted apart). Meanwhile `--watchers`
informer-like watchers (half of them through a label selector; resumed from their last resourceVersion after
server timeouts and their own drops) each watch the namespace's ConfigMaps and Pods and check that they see every
write made, once, in resourceVersion order; once closed, the apiserver must forget them.

Reports p50/p99 latency per verb, errors other than 409 by status code and message (target 0), watch events seen
vs writes made, and the apiserver's RSS before, after, and after a pause (for its caches to settle).

    .venv/bin/python -m bench.load [--clients 50] [--seconds 60] [--watchers 10] [--settle-seconds 10]
"""
from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.apiserver import ms, pct  # noqa: E402
from bench.common import control_plane, parse_flags, report, status_mib  # noqa: E402
from apiserver.watchcache import HISTORY  # noqa: E402

NS = "load"
SHARED = 5  # ConfigMaps every client read-modify-writes (the source of 409s)
PER_CLIENT = 4  # objects of each kind a client keeps cycling through
RESOURCES = ("configmaps", "pods")
JSON, MERGE, STRATEGIC = ("application/json", "application/merge-patch+json",
                          "application/strategic-merge-patch+json")


def configmap(name: str, seq: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "load"}},
            "data": {"seq": str(seq), "payload": "x" * 256}}


def pod(name: str, seq: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "load", "seq": str(seq)}},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                     "env": [{"name": "SEQ", "value": str(seq)}]},
                                    {"name": "side", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}


@dataclass
class Tally:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    conflicts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # (resource, resourceVersion) of every successful write, and its event type as a watcher should see it
    writes: dict[tuple[str, int], str] = field(default_factory=dict)
    count: Counter[str] = field(default_factory=Counter)


class Client:
    def __init__(self, s: aiohttp.ClientSession, url: str, tally: Tally) -> None:
        self.s, self.url, self.tally = s, url, tally

    def path(self, resource: str, name: str = "") -> str:
        return f"{self.url}/api/v1/namespaces/{NS}/{resource}" + (f"/{name}" if name else "")

    async def call(self, verb: str, method: str, url: str, resource: str, body: Any = None,
                   content_type: str = JSON, event: str | None = None) -> dict[str, Any] | None:
        """One request, timed and tallied; the object on 2xx, None otherwise. `event` is the watch event a
        successful write makes (its resourceVersion is recorded so the watchers can be checked against it)."""
        t = time.perf_counter()
        try:
            async with self.s.request(method, url, data=None if body is None else orjson.dumps(body),
                                      headers={"Content-Type": content_type}) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.tally.errors[f"{verb}: {type(e).__name__}: {e}"] += 1
            return None
        self.tally.latency[verb].append(time.perf_counter() - t)
        self.tally.count[verb] += 1
        if status == 409:
            self.tally.conflicts[verb] += 1
            return None
        if status >= 300:
            try:
                message = orjson.loads(raw).get("message", "")
            except orjson.JSONDecodeError:
                message = raw[:200].decode(errors="replace")
            self.tally.errors[f"{verb} {status}: {message}"] += 1
            return None
        obj: dict[str, Any] = orjson.loads(raw)
        if event is not None:
            self.tally.writes[(resource, int(obj["metadata"]["resourceVersion"]))] = event
        return obj

    async def cycle(self, resource: str, name: str, seq: int) -> None:
        """One object's life: create, get, update, merge patch, strategic patch, delete."""
        make = configmap if resource == "configmaps" else pod
        if await self.call("create", "POST", self.path(resource), resource, make(name, seq), event="ADDED") is None:
            return
        got = await self.call("get", "GET", self.path(resource, name), resource)
        if got is None:
            return
        if resource == "configmaps":
            got["data"]["seq"] = f"{seq}-put"
        else:
            got["metadata"]["labels"]["seq"] = f"{seq}-put"
        await self.call("update", "PUT", self.path(resource, name), resource, got, event="MODIFIED")
        await self.call("patch_merge", "PATCH", self.path(resource, name), resource,
                        {"metadata": {"annotations": {"merge": str(seq)}}}, MERGE, event="MODIFIED")
        strategic = ({"data": {"strategic": str(seq)}} if resource == "configmaps" else
                     {"spec": {"containers": [{"name": "side", "image": f"busybox:2.{seq}"}]}})
        await self.call("patch_strategic", "PATCH", self.path(resource, name), resource, strategic, STRATEGIC,
                        event="MODIFIED")
        await self.call("delete", "DELETE", self.path(resource, name), resource, event="DELETED")

    async def shared_update(self, index: int, seq: int) -> None:
        """Read-modify-write of a ConfigMap every client writes: a 409 when another got there first."""
        name = f"shared-{seq % SHARED}"
        got = await self.call("get", "GET", self.path("configmaps", name), "configmaps")
        if got is not None:
            got["data"]["seq"] = f"{index}-{seq}"  # never a no-op (which would make no event)
            await self.call("update", "PUT", self.path("configmaps", name), "configmaps", got, event="MODIFIED")

    async def run(self, index: int, until: float) -> None:
        rng = random.Random(index)
        seq = 0
        while time.monotonic() < until:
            seq += 1
            if rng.random() < 0.2:
                await self.shared_update(index, seq)
            else:
                resource = rng.choice(RESOURCES)
                await self.cycle(resource, f"c{index}-{seq % PER_CLIENT}", seq)


@dataclass
class Seen:
    events: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    watches: int = 0  # watch requests made (the first and every resume)
    abandoned: int = 0  # of which the client closed the connection in the middle


async def watch(s: aiohttp.ClientSession, url: str, resource: str, rv: str, seen: Seen, ready: asyncio.Event,
                stop: asyncio.Event, rng: random.Random, selector: str) -> None:
    """Like an informer: a watch that the server ends after a few seconds (timeoutSeconds), or that this client
    drops now and then, resumed each time from the last resourceVersion seen (events or bookmarks)."""
    while not stop.is_set():
        params = {"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(rng.randint(2, 10)), **({"labelSelector": selector} if selector else {})}
        abandon_after = rng.randint(20, 500) if rng.random() < 0.3 else 0
        seen.watches += 1
        async with s.get(f"{url}/api/v1/namespaces/{NS}/{resource}", params=params,
                         timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
            if r.status != 200:
                seen.errors.append(f"watch {resource}: {r.status} {(await r.read())[:200]!r}")
                ready.set()
                return
            ready.set()
            received = 0
            async for line in r.content:
                if not line.strip():
                    continue
                ev = orjson.loads(line)
                if ev["type"] == "ERROR":
                    seen.errors.append(f"watch {resource} from {rv}: {ev['object'].get('message')}")
                    return
                rv = ev["object"]["metadata"]["resourceVersion"]
                if ev["type"] != "BOOKMARK":
                    seen.events[resource].append((ev["type"], int(rv)))
                received += 1
                if stop.is_set():
                    return
                if received == abandon_after:
                    seen.abandoned += 1
                    r.close()  # drop the connection, as a client that dies or restarts would
                    break


async def registered_watchers(s: aiohttp.ClientSession, url: str) -> float:
    """The apiserver's count of open watches (its apiserver_registered_watchers gauge, all resources)."""
    async with s.get(f"{url}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_registered_watchers{"))


def check_watchers(tally: Tally, watchers: list[Seen]) -> dict[str, Any]:
    """Each watcher must have seen exactly the writes made (resourceVersion and event type), in order."""
    expected = {res: sorted((rv, ev) for (r, rv), ev in tally.writes.items() if r == res) for res in RESOURCES}
    out: dict[str, Any] = {"writes": {res: len(expected[res]) for res in RESOURCES}, "watchers": len(watchers),
                           "events_seen_per_watcher": [{res: len(w.events[res]) for res in RESOURCES}
                                                       for w in watchers],
                           "missing": 0, "unexpected": 0, "out_of_order": 0, "errors": []}
    for w in watchers:
        out["errors"] += w.errors
        for res in RESOURCES:
            got = [(rv, ev) for ev, rv in w.events[res]]
            out["out_of_order"] += sum(1 for a, b in zip(got, got[1:]) if b[0] <= a[0])
            want = set(expected[res])
            have = set(got)
            out["missing"] += len(want - have)
            # events of writes whose response the client never read (a timeout) would be here: none expected
            out["unexpected"] += len(have - want)
    out["all_seen_in_order"] = out["missing"] == out["unexpected"] == out["out_of_order"] == 0 and not out["errors"]
    return out


async def sample_rss(pid: int, every: float, samples: list[tuple[float, float | None]], began: float) -> None:
    while True:
        samples.append((round(time.monotonic() - began, 1), status_mib(pid)))
        await asyncio.sleep(every)


async def load(url: str, token: str, pid: int, clients: int, seconds: float, watchers: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=clients + 2 * watchers + 10)
    async with aiohttp.ClientSession(headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as s:
        tally = Tally()
        setup = Client(s, url, tally)
        await setup.call("setup", "POST", f"{url}/api/v1/namespaces", "namespaces",
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        for i in range(SHARED):
            await setup.call("setup", "POST", setup.path("configmaps"), "configmaps", configmap(f"shared-{i}", 0))
        if tally.errors:
            raise SystemExit(f"setup failed: {dict(tally.errors)}")
        async with s.get(setup.path("configmaps"), params={"limit": "1"}) as r:
            rv = orjson.loads(await r.read())["metadata"]["resourceVersion"]
        seen = [Seen() for _ in range(watchers)]
        stop = asyncio.Event()
        readies: list[asyncio.Event] = []
        tasks = []
        rng = random.Random(-1)
        for i, w in enumerate(seen):
            for res in RESOURCES:
                readies.append(asyncio.Event())
                # half the watchers filter by a label every object has: the same events, through the filter
                tasks.append(asyncio.create_task(watch(s, url, res, rv, w, readies[-1], stop, rng,
                                                       "app=load" if i % 2 else "")))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 30)
        began = time.monotonic()
        rss: list[tuple[float, float | None]] = []
        sampler = asyncio.create_task(sample_rss(pid, max(1.0, seconds / 12), rss, began))
        # one client in five connects anew for every request, as a kubectl invocation does
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=60)) as fresh:
            await asyncio.gather(*(Client(fresh if i % 5 == 4 else s, url, tally).run(i, began + seconds)
                                   for i in range(clients)))
        elapsed = time.monotonic() - began
        sampler.cancel()
        # a last write per resource marks the end: every watcher has all writes once it has seen this one
        marks = {res: await setup.call("mark", "POST", setup.path(res), res, (configmap if res == "configmaps"
                                       else pod)("end-mark", 0), event="ADDED") for res in RESOURCES}
        last = {res: int(m["metadata"]["resourceVersion"]) for res, m in marks.items() if m is not None}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
                w.errors or all(w.events[res] and w.events[res][-1][1] >= last.get(res, 0) for res in RESOURCES)
                for w in seen):
            await asyncio.sleep(0.1)
        stop.set()
        watch_drain_s = round(time.monotonic() - began - elapsed, 2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # every watch is closed now: the server must forget them (it sweeps for gone clients every 2 s)
        deadline = time.monotonic() + 15
        while (left := await registered_watchers(s, url)) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    writes = sum(tally.count[v] - tally.conflicts[v] - sum(n for e, n in tally.errors.items() if e.startswith(v + " "))
                 for v in ("create", "update", "patch_merge", "patch_strategic", "delete"))
    verbs = [v for v in ("create", "get", "update", "patch_merge", "patch_strategic", "delete") if tally.latency[v]]
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": sum(tally.count.values()),
            "requests_per_s": round(sum(tally.count.values()) / elapsed),
            "latency_ms": {v: {"count": tally.count[v], "p50": ms(pct(tally.latency[v], 0.5)),
                               "p99": ms(pct(tally.latency[v], 0.99))} for v in verbs},
            "conflicts_409": dict(tally.conflicts), "errors_other_than_409": dict(tally.errors),
            "errors_other_than_409_total": sum(tally.errors.values()), "writes_ok": writes,
            "apiserver_rss_mib_during": rss,
            "watch": {**check_watchers(tally, seen), "drain_after_writes_s": watch_drain_s,
                      "watch_requests": sum(w.watches for w in seen),
                      "dropped_by_client": sum(w.abandoned for w in seen),
                      "server_watches_left_15s_after_close": left,
                      # successful writes that returned a resourceVersion another write had (a no-op: no event)
                      "writes_sharing_a_resource_version": writes + len(last) - len(tally.writes)}}


def main() -> int:
    args = parse_flags(__doc__, clients=50, seconds=60.0, watchers=10, settle_seconds=10.0)
    with control_plane("pkt-bench-load-") as cp:
        pid = cp.api.proc.pid
        rss: dict[str, Any] = {"before_mib": status_mib(pid)}
        result = asyncio.run(load(cp.api.url, cp.api.token, pid, args.clients, args.seconds, args.watchers))
        rss["after_mib"] = status_mib(pid)
        time.sleep(args.settle_seconds)  # no requests: let the apiserver's caches and allocator settle
        rss["after_pause_mib"] = status_mib(pid)
        rss["peak_mib"] = status_mib(pid, "VmHWM")
        rss["pause_seconds"] = args.settle_seconds
        rss["watch_cache_history_events_per_resource"] = HISTORY  # RSS grows until this is full, then flat
        result["apiserver_rss"] = rss
        if cp.api.proc.poll() is not None:
            result["apiserver_exited"] = cp.api.proc.returncode
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    return report(result)


if __name__ == "__main__":
    sys.exit(main())
