"""Endpoints controller: for each Service with a selector, the IPs of the pods behind it
(as an Endpoints object and as EndpointSlices).

Ready pods go to `addresses`, the others (running but not ready) to
`notReadyAddresses`, grouped into subsets by their resolved port list: a named
targetPort is looked up in each pod's container ports, so pods of different
versions may serve the same Service port on different numbers.
"""
from __future__ import annotations

import copy
from typing import Any

from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_already_exists, is_not_found
from pklib.informer import Obj
from pklib.objects import key_of
from pklib.selectors import LabelSelector, Requirement
from pklib.resources import ENDPOINTS, PODS, SERVICES

from .endpointslices import ENDPOINTSLICES, SERVICE_NAME_LABEL, sync_slices
from .util import is_pod_ready, meta


def service_selector(svc: Obj) -> LabelSelector | None:
    sel = (svc.get("spec") or {}).get("selector")
    if not sel:
        return None
    return LabelSelector(tuple(Requirement(k, "=", frozenset([str(v)])) for k, v in sel.items()))


def resolve_port(svc_port: dict[str, Any], pod: Obj) -> int | None:
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    proto = svc_port.get("protocol", "TCP")
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == proto:
                return int(p["containerPort"])
    return None


def compute_subsets(svc: Obj, pods: list[Obj]) -> list[dict[str, Any]]:
    spec = svc.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    by_ports: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for pod in pods:
        pm, ps = meta(pod), pod.get("status") or {}
        ip = ps.get("podIP")
        if not ip or pm.get("deletionTimestamp") or ps.get("phase") in ("Succeeded", "Failed"):
            continue
        ports: list[dict[str, Any]] = []
        for sp in spec.get("ports") or []:
            number = resolve_port(sp, pod)
            if number is None:
                continue
            port = {"port": number, "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                port["name"] = sp["name"]
            ports.append(port)
        if spec.get("ports") and not ports:
            continue  # no Service port resolves on this pod
        address: dict[str, Any] = {"ip": ip, "targetRef": {"kind": "Pod", "namespace": pm["namespace"],
                                                            "name": pm["name"], "uid": pm.get("uid")}}
        pspec = pod.get("spec") or {}
        if pspec.get("nodeName"):
            address["nodeName"] = pspec["nodeName"]
        if pspec.get("hostname") and pspec.get("subdomain") == meta(svc)["name"]:
            address["hostname"] = pspec["hostname"]
        group_key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        group = by_ports.setdefault(group_key, {"addresses": [], "notReadyAddresses": [], "ports": ports})
        group["addresses" if publish_not_ready or is_pod_ready(pod) else "notReadyAddresses"].append(address)
    subsets = []
    for key in sorted(by_ports):
        group = by_ports[key]
        subset: dict[str, Any] = {}
        for field in ("addresses", "notReadyAddresses"):
            if group[field]:
                subset[field] = sorted(group[field], key=lambda a: (a["ip"], a["targetRef"]["name"]))
        if group["ports"]:
            subset["ports"] = sorted(group["ports"], key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(subset)
    return subsets


class EndpointsController(Controller):
    name = "endpoints"
    state_only = True  # Endpoints and EndpointSlices computed from Services and pods

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.svc_informer = self.watch(SERVICES, self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pod_informer = self.watch(PODS, self._pod_changed, lambda old, new: self._pod_changed(new, old),
                                       self._pod_changed)
        self.ep_informer = self.watch(ENDPOINTS, on_delete=self._endpoints_deleted)
        self.slice_informer = self.watch(ENDPOINTSLICES, on_delete=self._slice_deleted)

    def _pod_changed(self, pod: Obj, old: Obj | None = None) -> None:
        for svc in self.svc_informer.store.by_index("namespace", meta(pod)["namespace"]):
            sel = service_selector(svc)
            if sel is None:
                continue
            if sel.matches(meta(pod).get("labels")) or (old is not None and sel.matches(meta(old).get("labels"))):
                self.enqueue(svc)

    def _endpoints_deleted(self, ep: Obj) -> None:
        # Someone deleted our Endpoints: recreate them if the Service still exists.
        if self.svc_informer.store.get(key_of(ep)) is not None:
            self.queue.add(key_of(ep))

    def _slice_deleted(self, endpoint_slice: Obj) -> None:
        svc_name = (meta(endpoint_slice).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc_name:
            self.queue.add(f"{meta(endpoint_slice)['namespace']}/{svc_name}")

    async def sync(self, key: str) -> None:
        svc = self.svc_informer.store.get(key)
        ns, _, name = key.partition("/")
        if svc is None:
            await sync_slices(self.client, self.slice_informer, ns, name, None, [])
            try:
                await self.client.delete(ENDPOINTS, name, ns)
            except ApiError as e:
                if not is_not_found(e):
                    raise
            return
        sel = service_selector(svc)
        if sel is None:
            return  # Endpoints of selector-less Services are managed by their users
        pods = [p for p in self.pod_informer.store.by_index("namespace", ns) if sel.matches(meta(p).get("labels"))]
        subsets = compute_subsets(svc, pods)
        await sync_slices(self.client, self.slice_informer, ns, name, svc, subsets)
        labels = dict(meta(svc).get("labels") or {})
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        current = self.ep_informer.store.get(key)
        if current is not None and (current.get("subsets") or []) == subsets \
                and (meta(current).get("labels") or {}) == labels:
            return
        if current is None:
            body: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets}
            try:
                await self.client.create(ENDPOINTS, body)
                return
            except ApiError as e:
                if not is_already_exists(e):
                    raise
                current = await self.client.get(ENDPOINTS, name, ns)
        body = copy.deepcopy(current)
        body["metadata"]["labels"] = labels
        body["subsets"] = subsets
        await self.client.update(ENDPOINTS, body)
