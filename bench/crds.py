"""Custom resources: creates/s and LIST time of a CRD's objects (schema pruning, defaulting, validation, and
optionally CEL rules) next to ConfigMaps of the same size, on one API server; and how long a new CRD takes from
create to Established to its first object.

Starts its own etcd and `pkube apiserver` (the test helpers) in a temporary directory, prints one JSON
document, cleans up. Figures only.

    .venv/bin/python -m bench.crds [--objects 2000] [--workers 8]
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.controlplane import _stop, start_apiserver, start_etcd  # noqa: E402
from tests.support.crds import widget_crd  # noqa: E402

CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


async def _create_all(s: aiohttp.ClientSession, url: str, bodies: list[dict[str, Any]], workers: int) -> float:
    it = iter(bodies)

    async def worker() -> None:
        for body in it:
            async with s.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as r:
                if r.status != 201:
                    raise RuntimeError(f"create failed: {r.status} {await r.text()}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - started


async def _list_time(s: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with s.get(url) as r:
        await r.read()
    return time.perf_counter() - started


async def _established(s: aiohttp.ClientSession, base: str, crd: dict[str, Any]) -> float:
    started = time.perf_counter()
    async with s.post(base + CRDS_PATH, data=orjson.dumps(crd), headers={"Content-Type": "application/json"}) as r:
        assert r.status == 201, await r.text()
    name = crd["metadata"]["name"]
    while True:
        async with s.get(f"{base}{CRDS_PATH}/{name}") as r:
            got = await r.json()
        if any(c["type"] == "Established" and c["status"] == "True"
               for c in (got.get("status") or {}).get("conditions") or []):
            return time.perf_counter() - started
        await asyncio.sleep(0.005)


async def run(objects: int, workers: int) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="pkube-bench-crds-")
    etcd = start_etcd(tmp)
    api = None
    try:
        api = start_apiserver(tmp, etcd.url)
        headers = {"Authorization": f"Bearer {api.token}"}
        async with aiohttp.ClientSession(headers=headers) as s:
            ns = "bench"
            async with s.post(f"{api.url}/api/v1/namespaces", data=orjson.dumps({"metadata": {"name": ns}}),
                              headers={"Content-Type": "application/json"}) as r:
                assert r.status == 201
            plain = widget_crd("plain.example.com")
            cel = widget_crd("cel.example.com")
            spec = cel["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            spec["x-kubernetes-validations"] = [{"rule": "self.size == 'large' || self.replicas <= 5"}]
            first_object = {}
            for crd in (plain, cel):
                took = await _established(s, api.url, crd)
                group = crd["spec"]["group"]
                t = time.perf_counter()
                body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "first"},
                        "spec": {"size": "small"}}
                await _create_all(s, f"{api.url}/apis/{group}/v1/namespaces/{ns}/widgets", [body], 1)
                first_object[group] = {"established_s": round(took, 4),
                                       "first_object_after_established_s": round(time.perf_counter() - t, 4)}
            spec_body = {"size": "small", "replicas": 3, "labels": {f"k{i}": "v" for i in range(5)},
                         "items": [{"name": f"i{i}"} for i in range(5)]}
            results: dict[str, Any] = {}
            kinds = {
                "configmaps": (f"{api.url}/api/v1/namespaces/{ns}/configmaps",
                               {"apiVersion": "v1", "kind": "ConfigMap", "data": {"spec": json.dumps(spec_body)}}),
                "widgets (schema)": (f"{api.url}/apis/plain.example.com/v1/namespaces/{ns}/widgets",
                                     {"apiVersion": "plain.example.com/v1", "kind": "Widget", "spec": spec_body}),
                "widgets (schema + CEL)": (f"{api.url}/apis/cel.example.com/v1/namespaces/{ns}/widgets",
                                           {"apiVersion": "cel.example.com/v1", "kind": "Widget",
                                            "spec": spec_body}),
            }
            for label, (url, template) in kinds.items():
                bodies = [dict(copy.deepcopy(template), metadata={"name": f"o-{i:05d}"}) for i in range(objects)]
                took = await _create_all(s, url, bodies, workers)
                results[label] = {"creates_per_s": round(objects / took, 1),
                                  "list_all_ms": round(await _list_time(s, url) * 1000, 1)}
        return {"benchmark": "crds", "objects": objects, "workers": workers, "kinds": results,
                "crd_lifecycle": first_object}
    finally:
        if api is not None:
            _stop(api.proc)
        _stop(etcd.proc)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--objects", type=int, default=2000)
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args.objects, args.workers)), indent=2))


if __name__ == "__main__":
    main()
