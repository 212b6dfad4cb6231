"""EndpointSlices mirroring what the Endpoints controller computed for a Service.

One slice per group of pods that share a resolved port list (the same grouping as
Endpoints subsets), named <service>-<hash of the ports>, labelled
kubernetes.io/service-name and owned by the Service, so that the garbage
collector removes them with it.
"""
from __future__ import annotations

import copy
from typing import Any

from pklib.api.wellknown import SERVICE_NAME_LABEL
from pklib.client import Client
from pklib.errors import ApiError, is_already_exists, is_not_found
from pklib.informer import Informer, Obj
from pklib.resources import ENDPOINTSLICES

from .util import meta, owner_reference, template_hash

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"


def desired_slices(svc: Obj, subsets: list[dict[str, Any]]) -> list[Obj]:
    name, ns = meta(svc)["name"], meta(svc)["namespace"]
    slices = []
    for subset in subsets or [{}]:
        endpoints = []
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for addr in subset.get(field) or []:
                ep: dict[str, Any] = {"addresses": [addr["ip"]],
                                      "conditions": {"ready": ready, "serving": ready, "terminating": False},
                                      "targetRef": addr["targetRef"]}
                for key in ("nodeName", "hostname"):
                    if addr.get(key):
                        ep[key] = addr[key]
                endpoints.append(ep)
        ports = subset.get("ports") or []
        slices.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-{template_hash({'ports': ports})[:5]}", "namespace": ns,
                         "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
                         "ownerReferences": [owner_reference(svc)]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
        })
    return slices


def _same(current: Obj, want: Obj) -> bool:
    return all(current.get(k) == want.get(k) for k in ("addressType", "endpoints", "ports")) \
        and (meta(current).get("labels") or {}) == meta(want)["labels"]


async def sync_slices(client: Client, informer: Informer, svc_ns: str, svc_name: str, svc: Obj | None,
                      subsets: list[dict[str, Any]]) -> None:
    """Create, update and delete this Service's slices to match `subsets` (svc None: delete them all)."""
    ours = {meta(s)["name"]: s for s in informer.store.by_index("label", f"{SERVICE_NAME_LABEL}={svc_name}")
            if meta(s).get("namespace") == svc_ns
            and (meta(s).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY}
    wanted = {meta(s)["name"]: s for s in desired_slices(svc, subsets)} if svc is not None else {}
    for name, want in wanted.items():
        # A slice created a moment ago may not be in the index yet; by its key the store has it (Store.remember).
        current = ours.get(name) or informer.store.get(f"{svc_ns}/{name}")
        if current is None:
            try:
                await client.create(ENDPOINTSLICES, want)
                continue
            except ApiError as e:
                if not is_already_exists(e):
                    raise
            current = await client.get(ENDPOINTSLICES, name, svc_ns)
        if not _same(current, want):
            body = copy.deepcopy(current)
            body["metadata"]["labels"] = want["metadata"]["labels"]
            body.update({k: want[k] for k in ("addressType", "endpoints", "ports")})
            await client.update(ENDPOINTSLICES, body)
    for name in set(ours) - set(wanted):
        try:
            await client.delete(ENDPOINTSLICES, name, svc_ns)
        except ApiError as e:
            if not is_not_found(e):
                raise
