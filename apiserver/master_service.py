"""The `kubernetes` Service in `default`: how pods find the API (Kubernetes' apiserver "kubernetes service" controller).

Its cluster IP is the first address of the service range, port 443 (`https`) to the apiserver's advertised
address and port, kept in the Endpoints and EndpointSlice of the same name. The apiserver creates them at start
and puts them back every RECONCILE_PERIOD if they were removed or changed, like kube-apiserver's endpoint
reconciler. Every pod's environment then carries KUBERNETES_SERVICE_HOST/PORT (the kubelet adds this Service to
every pod's variables), which is what in-cluster clients read.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from pklib.resources import ENDPOINTS, ENDPOINTSLICES, SERVICES, Resource

from .handlers_objects import Objects, clone_stored
from .status import StatusError
from .storage.interface import Entry

log = logging.getLogger("apiserver.kubernetes-service")
NAME, NAMESPACE = "kubernetes", "default"
RECONCILE_PERIOD = 10.0
PORT_NAME = "https"
SERVICE_LABELS = {"component": "apiserver", "provider": "kubernetes"}
SLICE_LABELS = {"kubernetes.io/service-name": NAME}

Obj = dict[str, Any]


def first_service_ip(service_cidr: str) -> str:
    return str(ipaddress.ip_network(service_cidr)[1])


def service(service_cidr: str, port: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(SERVICE_LABELS)},
            "spec": {"type": "ClusterIP", "clusterIP": first_service_ip(service_cidr), "sessionAffinity": "None",
                     "ports": [{"name": PORT_NAME, "port": 443, "protocol": "TCP", "targetPort": port}]}}


def endpoints(address: str, port: int) -> Obj:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"endpointslice.kubernetes.io/skip-mirror":
                                                                          "true"}},
            "subsets": [{"addresses": [{"ip": address}],
                         "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]}]}


def endpoint_slice(address: str, port: int) -> Obj:
    family = "IPv6" if ipaddress.ip_address(address).version == 6 else "IPv4"
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(SLICE_LABELS)},
            "addressType": family,
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]}


_KEPT = {"Service": ("spec",), "Endpoints": ("subsets",), "EndpointSlice": ("addressType", "endpoints", "ports")}


async def _ensure(objects: Objects, res: Resource, wanted: Obj) -> None:
    """Create `wanted`, or put back its managed fields if someone changed them (the Service: its ports only,
    since its cluster IP is immutable and the rest is defaulted)."""
    try:
        current = await objects.get(res, NAMESPACE, NAME)
    except StatusError as e:
        if e.code != 404:
            raise
        await objects.create(res, NAMESPACE, clone_stored(wanted))
        return

    def differs(current: Obj) -> bool:
        if res is SERVICES:
            return current.get("spec", {}).get("ports") != wanted["spec"]["ports"]
        return any(current.get(k) != wanted.get(k) for k in _KEPT[wanted["kind"]])

    if not differs(current):
        return

    def mutate(entry: Entry) -> Obj:
        new = clone_stored(entry.value)
        if res is SERVICES:
            new.setdefault("spec", {})["ports"] = wanted["spec"]["ports"]
        else:
            for k in _KEPT[wanted["kind"]]:
                new[k] = wanted[k]
        return new
    await objects.guaranteed_update(res, NAMESPACE, NAME, mutate)


async def reconcile(objects: Objects, service_cidr: str, address: str, port: int) -> None:
    await _ensure(objects, SERVICES, service(service_cidr, port))
    await _ensure(objects, ENDPOINTS, endpoints(address, port))
    await _ensure(objects, ENDPOINTSLICES, endpoint_slice(address, port))


async def keep(objects: Objects, service_cidr: str, address: str, port: int) -> None:
    """Reconcile now and every RECONCILE_PERIOD until cancelled; failures are logged and retried."""
    while True:
        try:
            await reconcile(objects, service_cidr, address, port)
        except StatusError as e:
            log.warning("the kubernetes Service: %s", e)
        except Exception:  # noqa: BLE001 - logged; the next round tries again
            log.exception("the kubernetes Service could not be reconciled")
        await asyncio.sleep(RECONCILE_PERIOD)
