"""API server benchmark: creates/s, GET latency, LIST of 10,000 pods, watch delivery latency.

Starts its own etcd and `pkube apiserver` (the same helpers the tests use) in a
temporary directory, prints one JSON document, and cleans up. Figures only:
nothing here passes or fails on time.

    .venv/bin/python -m bench.apiserver [--pods 10000] [--watchers 100]   # also raw etcd creates, same bodies
    .venv/bin/python -m bench.apiserver --authz [--pods 5000]   # the authorizer's cost per request
    .venv/bin/python -m bench.apiserver --sa-tokens [--pods 2000]   # static token vs service-account JWT
    .venv/bin/python -m bench.apiserver --writes [--pods 3000] [--profile FILE]   # CPU per binding / status patch

`--authz` measures only creates, in one run: once as the superuser (system:masters, which the authorizer
allows without looking at RBAC) and once as a user whom RBAC allows through a RoleBinding of the `edit`
ClusterRole, among --bindings other bindings (the default roles' own plus unrelated users').

`--writes` measures the apiserver's own CPU-seconds per write of the two kinds a scheduling wave is made of,
with two watchers of all pods open (the scheduler's and a kubelet's): POST pods/binding of --pods pending pods,
then a kubelet-like merge patch of each one's status (32 clients each). CPU-seconds, unlike wall time, barely
depend on what else the machine runs. `--profile FILE` records the apiserver with py-spy meanwhile
(.svg flame graph, .json speedscope, else raw collapsed stacks).

`--sa-tokens` measures GETs/s of one pod, in one run, with the admin's static token and with a service-account
token bound to a pod (signature, times, audience, and the ServiceAccount and pod looked up per request), plus the
in-process cost of checking a token's signature (RS256, ES256).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any, Sequence

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import control_plane, cpu_times, report, start_profiler, stop_profiler  # noqa: E402
from tests.support.controlplane import _stop, service_account_flags, start_apiserver  # noqa: E402

POD: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"labels": {"app": "bench", "tier": "web"}, "annotations": {"bench": "x" * 200}},
       "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                "env": [{"name": f"E{i}", "value": str(i)} for i in range(5)]}]}}


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(x: float) -> float:
    return round(x * 1000, 2)


async def create_pods(s: aiohttp.ClientSession, url: str, ns: str, count: int, workers: int) -> dict[str, Any]:
    names = iter(range(count))
    latencies: list[float] = []

    async def worker() -> None:
        for i in names:
            body = dict(POD, metadata=dict(POD["metadata"], name=f"pod-{i:05d}"))
            t = time.perf_counter()
            async with s.post(f"{url}/api/v1/namespaces/{ns}/pods", data=orjson.dumps(body),
                              headers={"Content-Type": "application/json"}) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(f"create failed: {r.status}")
            latencies.append(time.perf_counter() - t)

    lag: list[int] = []
    sampler = asyncio.create_task(cache_lag(s, url, lag))
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - start
    sampler.cancel()
    return {"pods": count, "clients": workers, "seconds": round(elapsed, 2), "creates_per_s": round(count / elapsed),
            "p50_ms": ms(pct(latencies, 0.5)), "p99_ms": ms(pct(latencies, 0.99)),
            # how far the watch cache (what watches and informers see) trailed etcd meanwhile, sampled every 0.25 s
            "watch_cache_revisions_behind_etcd": {"max": max(lag, default=0), "median": pct(lag, 0.5) if lag else 0}}


async def cache_lag(s: aiohttp.ClientSession, url: str, out: list[int]) -> None:
    """Append, every 0.25 s, etcd's revision minus the watch cache's: a list at resourceVersion 0 answers at the
    cache's revision, a consistent one at etcd's (of an empty namespace, so both are cheap)."""
    async def revision(query: str) -> int:
        async with s.get(f"{url}/api/v1/namespaces/no-such-namespace/configmaps?{query}") as r:
            return int((await r.json())["metadata"]["resourceVersion"])
    while True:
        cached = await revision("resourceVersion=0")
        out.append(await revision("limit=1") - cached)
        await asyncio.sleep(0.25)


async def raw_etcd_creates(etcd_url: str, count: int, workers: int) -> dict[str, Any]:
    """The same pod bodies created straight in etcd (a transaction that creates a key only if absent, as the
    apiserver's storage does) through the apiserver's own etcd client, `workers` at once, under a prefix of
    their own: what the API's creates/s is measured against."""
    from apiserver.storage.etcd import EtcdStorage
    storage = EtcdStorage([etcd_url], prefix="/bench-raw")
    names = iter(range(count))

    async def worker() -> None:
        for i in names:
            await storage.create(f"/pods/bench/pod-{i:05d}", dict(POD, metadata=dict(POD["metadata"],
                                                                                     name=f"pod-{i:05d}")))
    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - start
    finally:
        await storage.close()
    return {"creates": count, "clients": workers, "seconds": round(elapsed, 2), "creates_per_s": round(count / elapsed)}


async def gets(s: aiohttp.ClientSession, url: str, ns: str, count: int, pods: int) -> dict[str, Any]:
    latencies = []
    for i in range(count):
        t = time.perf_counter()
        async with s.get(f"{url}/api/v1/namespaces/{ns}/pods/pod-{(i * 7919) % pods:05d}") as r:
            await r.read()
        latencies.append(time.perf_counter() - t)
    return {"requests": count, "p50_ms": ms(pct(latencies, 0.5)), "p99_ms": ms(pct(latencies, 0.99))}


async def lists(s: aiohttp.ClientSession, url: str, ns: str, pods: int) -> dict[str, Any]:
    """Wall time of a full LIST (request sent → last byte received), and separately the client's JSON decode."""
    out: dict[str, Any] = {"pods": pods}
    for label, params in [("consistent", {}), ("resource_version_0", {"resourceVersion": "0"}),
                          ("paged_500_from_etcd", None)]:
        times, decode = [], []
        for _ in range(3):
            t = time.perf_counter()
            items, cont, decode_s = 0, "", 0.0
            while True:
                q = dict(params) if params is not None else {"limit": "500", **({"continue": cont} if cont else {})}
                async with s.get(f"{url}/api/v1/namespaces/{ns}/pods", params=q) as r:
                    raw = await r.read()
                t_decode = time.perf_counter()
                doc = orjson.loads(raw)
                decode_s += time.perf_counter() - t_decode
                items += len(doc["items"])
                cont = doc["metadata"].get("continue") or ""
                if params is not None or not cont:
                    break
            times.append(time.perf_counter() - t - decode_s)
            decode.append(decode_s)
            assert items == pods, (label, items)
        out[label] = {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
                      "client_json_decode_s": round(min(decode), 3), "bytes": len(raw) if params is not None else None}
    return out


async def watch_latency(s: aiohttp.ClientSession, url: str, ns: str, watchers: int, updates: int) -> dict[str, Any]:
    sent: dict[str, float] = {}
    latencies: list[float] = []
    ready = 0
    all_ready = asyncio.Event()
    async with s.get(f"{url}/api/v1/namespaces/{ns}/configmaps", params={"limit": "1"}) as r:
        rv = orjson.loads(await r.read())["metadata"]["resourceVersion"]

    async def watcher() -> None:
        nonlocal ready
        params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "120"}
        async with s.get(f"{url}/api/v1/namespaces/{ns}/configmaps", params=params) as r:
            ready += 1
            if ready == watchers:
                all_ready.set()
            seen = 0
            async for line in r.content:
                if not line.strip():
                    continue
                now = time.perf_counter()
                ev = orjson.loads(line)
                seq = ev["object"].get("data", {}).get("seq")
                if seq in sent:
                    latencies.append(now - sent[seq])
                    seen += 1
                    if seen == updates:
                        return

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    await asyncio.wait_for(all_ready.wait(), 30)
    await asyncio.sleep(0.5)  # let every server-side watcher register before the first write
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"seq": "init"}}
    async with s.post(f"{url}/api/v1/namespaces/{ns}/configmaps", data=orjson.dumps(body),
                      headers={"Content-Type": "application/json"}) as r:
        await r.read()
    for i in range(updates - 1):
        seq = str(i)
        sent[seq] = time.perf_counter()
        async with s.patch(f"{url}/api/v1/namespaces/{ns}/configmaps/w", data=orjson.dumps({"data": {"seq": seq}}),
                           headers={"Content-Type": "application/merge-patch+json"}) as r:
            await r.read()
        await asyncio.sleep(0.02)  # a steady stream of writes, not one burst
    sent["init"] = 0.0  # the create's time was not recorded: ignore it
    updates -= 1
    done, pending = await asyncio.wait(tasks, timeout=30)
    for t in pending:
        t.cancel()
    latencies = [x for x in latencies if x < 1e6]
    return {"watchers": watchers, "events_per_watcher": updates, "delivered": len(latencies),
            "p50_ms": ms(pct(latencies, 0.5)), "p99_ms": ms(pct(latencies, 0.99))}


async def bench(url: str, token: str, pods: int, watchers: int, etcd_url: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=200),
                                     timeout=aiohttp.ClientTimeout(total=300)) as s:
        ns = "bench"
        async with s.post(f"{url}/api/v1/namespaces", data=orjson.dumps(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                headers={"Content-Type": "application/json"}) as r:
            await r.read()
        result: dict[str, Any] = {"create": await create_pods(s, url, ns, pods, 32)}
        result["raw_etcd_create"] = await raw_etcd_creates(etcd_url, pods, 32)
        result["api_creates_over_raw_etcd_creates"] = round(
            result["create"]["creates_per_s"] / result["raw_etcd_create"]["creates_per_s"], 2)
        result["get"] = await gets(s, url, ns, 2000, pods)
        result["list"] = await lists(s, url, ns, pods)
        result["watch"] = await watch_latency(s, url, ns, watchers, 100)
        return result


async def _each(s: aiohttp.ClientSession, names: list[str], workers: int, method: str, url_of: Any,
                body_of: Any, content_type: str, want: int) -> None:
    todo = iter(names)

    async def worker() -> None:
        for name in todo:
            async with s.request(method, url_of(name), data=orjson.dumps(body_of(name)),
                                 headers={"Content-Type": content_type}) as r:
                await r.read()
                if r.status != want:
                    raise RuntimeError(f"{method} {url_of(name)}: {r.status} {await r.text()}")

    await asyncio.gather(*(worker() for _ in range(workers)))


async def bench_writes(url: str, token: str, pid: int, pods: int, profile: str | None) -> dict[str, Any]:
    """Apiserver CPU per binding and per status patch (see the module's docstring)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=200),
                                     timeout=aiohttp.ClientTimeout(total=600)) as s:
        ns = "bench"
        await _post(s, f"{url}/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": ns}})
        await create_pods(s, url, ns, pods, 32)
        names = [f"pod-{i:05d}" for i in range(pods)]
        watchers = [asyncio.create_task(_drain(s, f"{url}/api/v1/pods?watch=true")) for _ in range(2)]
        await asyncio.sleep(0.5)  # the watches are open (not a synchronisation the figures depend on)
        base = f"{url}/api/v1/namespaces/{ns}/pods"
        profiler = start_profiler(profile, pid)
        result: dict[str, Any] = {"pods": pods, "clients": 32, "watchers": 2}
        phases = [("binding", "POST", lambda n: f"{base}/{n}/binding",
                   lambda n: {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": n},
                              "target": {"kind": "Node", "name": f"node-{hash(n) % 100}"}},
                   "application/json", 201),
                  ("status_patch", "PATCH", lambda n: f"{base}/{n}/status",
                   lambda n: {"status": {"phase": "Running", "podIP": "10.1.2.3", "hostIP": "192.0.2.1",
                                         "startTime": "2026-01-01T00:00:00Z",
                                         "conditions": [{"type": t, "status": "True",
                                                         "lastTransitionTime": "2026-01-01T00:00:01Z"}
                                                        for t in ("Initialized", "Ready", "ContainersReady")],
                                         "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0,
                                                                "image": "busybox:1.36", "imageID": "",
                                                                "started": True,
                                                                "state": {"running": {
                                                                    "startedAt": "2026-01-01T00:00:01Z"}}}]}},
                   "application/merge-patch+json", 200)]
        for phase, method, url_of, body_of, content_type, want in phases:
            cpu0, t0 = cpu_times(pid)[0], time.perf_counter()
            await _each(s, names, 32, method, url_of, body_of, content_type, want)
            cpu, wall = cpu_times(pid)[0] - cpu0, time.perf_counter() - t0
            result[phase] = {"apiserver_cpu_s": round(cpu, 2),
                             "apiserver_cpu_ms_per_write": round(1000 * cpu / pods, 3),
                             "writes_per_s": round(pods / wall, 1)}
        if profiler:
            result["apiserver_profile"] = stop_profiler(profiler, profile or "")
        for w in watchers:
            w.cancel()
        return result


async def _drain(s: aiohttp.ClientSession, url: str) -> None:
    async with s.get(url, timeout=aiohttp.ClientTimeout(total=None)) as r:
        async for _ in r.content.iter_any():
            pass


RBAC = "rbac.authorization.k8s.io"
BENCH_USER = "bench-user"


async def _post(s: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    async with s.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as r:
        await r.read()
        if r.status != 201:
            raise RuntimeError(f"POST {url}: {r.status}")


def _binding(name: str, ns: str, user: str) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "User", "name": user, "apiGroup": RBAC}]}


async def bench_authz(url: str, admin_token: str, user_token: str, pods: int, bindings: int) -> dict[str, Any]:
    """Creates/s as the superuser and as an RBAC-bound user, on the same server."""
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin_token}"}, timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=200)) as admin, \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {user_token}"}, timeout=timeout,
                                  connector=aiohttp.TCPConnector(limit=200)) as user:
        rounds = ("1", "2")  # alternate, so that neither identity gets the emptier store
        for ns in [f"bench-{who}-{r}" for r in rounds for who in ("super", "rbac")]:
            await _post(admin, f"{url}/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": ns}})
        for i in range(bindings):  # others' bindings, cluster-wide and in the user's namespaces
            await _post(admin, f"{url}/apis/{RBAC}/v1/clusterrolebindings", dict(
                _binding(f"other-{i}", "", f"user-{i}"), kind="ClusterRoleBinding",
                metadata={"name": f"other-{i}"}, roleRef={"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"}))
            for r in rounds:
                await _post(admin, f"{url}/apis/{RBAC}/v1/namespaces/bench-rbac-{r}/rolebindings",
                            _binding(f"other-{i}", f"bench-rbac-{r}", f"user-{i}"))
        for r in rounds:
            await _post(admin, f"{url}/apis/{RBAC}/v1/namespaces/bench-rbac-{r}/rolebindings",
                        _binding("bench", f"bench-rbac-{r}", BENCH_USER))
        deadline = time.monotonic() + 30
        while True:  # the authorizer reads the watch cache: wait for it to show the bindings
            async with user.get(f"{url}/api/v1/namespaces/bench-rbac-2/pods", params={"limit": "1"}) as answer:
                await answer.read()
                if answer.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the RoleBinding never took effect")
            await asyncio.sleep(0.05)
        runs: dict[str, list[dict[str, Any]]] = {"super": [], "rbac": []}
        for r in rounds:
            runs["super"].append(await create_pods(admin, url, f"bench-super-{r}", pods // 2, 32))
            runs["rbac"].append(await create_pods(user, url, f"bench-rbac-{r}", pods // 2, 32))

        def total(results: list[dict[str, Any]]) -> dict[str, Any]:
            seconds = sum(x["seconds"] for x in results)
            count = sum(x["pods"] for x in results)
            return {"pods": count, "seconds": round(seconds, 2), "creates_per_s": round(count / seconds),
                    "p50_ms_per_round": [x["p50_ms"] for x in results],
                    "p99_ms_per_round": [x["p99_ms"] for x in results]}
        superuser, rbac_user = total(runs["super"]), total(runs["rbac"])
        return {"create_superuser": superuser, "create_rbac_user": rbac_user, "other_bindings": 3 * bindings,
                "rbac_vs_superuser_creates": round(rbac_user["creates_per_s"] / superuser["creates_per_s"], 3)}


def authorize_cost(bindings: int, calls: int = 20_000) -> dict[str, Any]:
    """µs per authorization decision in-process, over the same policy as --authz builds (no HTTP noise)."""
    from apiserver.authz import policy
    from apiserver.authz.authorizer import Authorizer
    from apiserver.authz.rbac import Attributes, StaticPolicy, UserInfo

    objects = [*policy.cluster_roles(), *policy.cluster_role_bindings()]
    for i in range(bindings):
        objects.append(dict(_binding(f"other-{i}", "", f"user-{i}"), kind="ClusterRoleBinding",
                            metadata={"name": f"other-{i}"}))
        objects.append(_binding(f"other-{i}", "bench-rbac", f"user-{i}"))
    objects.append(_binding("bench", "bench-rbac", BENCH_USER))
    snapshot = StaticPolicy(objects)
    authorizer = Authorizer(lambda: snapshot)
    out: dict[str, Any] = {}
    for label, user in (("superuser", UserInfo("admin", groups=("system:masters", "system:authenticated"))),
                        ("rbac_user", UserInfo(BENCH_USER, groups=("system:authenticated",)))):
        attrs = Attributes("create", True, "bench-rbac", "", "v1", "pods", user=user)
        assert authorizer.authorize(attrs).allowed
        t = time.perf_counter()
        for _ in range(calls):
            authorizer.authorize(attrs)
        out[f"{label}_us"] = round((time.perf_counter() - t) / calls * 1e6, 2)
    t = time.perf_counter()
    StaticPolicy(objects)
    out["snapshot_rebuild_ms"] = round((time.perf_counter() - t) * 1000, 2)
    return out


async def bench_sa_tokens(url: str, admin_token: str, gets_count: int) -> dict[str, Any]:
    """GETs/s with the static admin token vs a pod-bound ServiceAccount token with cluster-admin, same server."""
    ns = "bench-sa"
    headers = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as admin:
        await _post(admin, f"{url}/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": ns}})
        await _post(admin, f"{url}/api/v1/namespaces/{ns}/serviceaccounts",
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bench"}})
        await _post(admin, f"{url}/api/v1/namespaces/{ns}/pods",
                    dict(POD, metadata={"name": "pod-00000"}, spec=dict(POD["spec"], serviceAccountName="bench")))
        await _post(admin, f"{url}/apis/{RBAC}/v1/clusterrolebindings", {
            "apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "bench-sa"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": ns}]})
        async with admin.post(f"{url}/api/v1/namespaces/{ns}/serviceaccounts/bench/token", json={
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "pod-00000"}}}) as r:
            sa_token = (await r.json())["status"]["token"]
    out: dict[str, Any] = {}
    for label, token in (("static_token", admin_token), ("service_account_token", sa_token)):
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
            while True:  # the authorizer reads the watch cache: wait for it to show the binding
                async with s.get(f"{url}/api/v1/namespaces/{ns}/pods/pod-00000") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.05)
            started = time.perf_counter()
            out[label] = await gets(s, url, ns, gets_count, 1)
            out[label]["gets_per_s"] = round(gets_count / (time.perf_counter() - started))
    out["sa_vs_static_gets"] = round(out["service_account_token"]["gets_per_s"] / out["static_token"]["gets_per_s"], 3)
    out["validate_in_process"] = token_validation_cost()
    return out


def token_validation_cost(calls: int = 2000) -> dict[str, Any]:
    """µs to check one service-account JWT in-process (no lookups): its signature the first time (`*_verify_us`),
    then a remembered one (`cached_us`: times and audience only)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from apiserver.satokens import Issuer, Validator
    out: dict[str, Any] = {}
    for label, key in (("rs256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                       ("es256", ec.generate_private_key(ec.SECP256R1()))):
        token, _ = Issuer(key, "bench").issue("ns", "sa", "uid", ["bench"], 3600)
        validator = Validator([key.public_key()], ("bench",))
        t = time.perf_counter()
        for _ in range(calls):
            validator._verify(token)  # noqa: SLF001 - the signature check alone
        out[f"{label}_verify_us"] = round((time.perf_counter() - t) / calls * 1e6, 1)
        t = time.perf_counter()
        for _ in range(calls):
            validator.validate(token, ("bench",))
        out["cached_us"] = round((time.perf_counter() - t) / calls * 1e6, 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--authz", action="store_true", help="only creates/s: superuser vs a user bound by RBAC")
    p.add_argument("--bindings", type=int, default=100, help="with --authz: unrelated bindings of each scope")
    p.add_argument("--sa-tokens", action="store_true", help="only GETs/s: static token vs service-account token")
    p.add_argument("--writes", action="store_true", help="only apiserver CPU per binding and per status patch")
    p.add_argument("--profile", metavar="FILE", help="with --writes: py-spy the apiserver into FILE")
    args = p.parse_args()
    with control_plane("pkt-bench-", start_api=False) as cp:
        server = start_apiserver(cp.tmp, cp.etcd.url, identities={BENCH_USER: ()} if args.authz else None,
                                 extra=service_account_flags(cp.tmp) if args.sa_tokens else None)
        try:
            if args.writes:
                result = asyncio.run(bench_writes(server.url, server.token, server.proc.pid, args.pods, args.profile))
            elif args.sa_tokens:
                result = asyncio.run(bench_sa_tokens(server.url, server.token, args.pods))
            elif args.authz:
                result = asyncio.run(bench_authz(server.url, server.token, server.tokens[BENCH_USER], args.pods,
                                                 args.bindings))
                result["authorize_in_process"] = authorize_cost(args.bindings)
            else:
                result = asyncio.run(bench(server.url, server.token, args.pods, args.watchers, cp.etcd.url))
        finally:
            _stop(server.proc)
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    return report(result)


if __name__ == "__main__":
    sys.exit(main())
