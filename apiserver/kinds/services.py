"""Service: defaults, rules, and the ClusterIP / NodePort allocations it owns.

Allocation happens in begin_create/begin_update (after validation, before the write)
and returns a rollback for when the write fails; after_delete gives the values back.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any

from pklib import validation as v

from ..allocators import IP_PREFIX, AllocationError, NodePortAllocator, Owner, RangeFull, ServiceIPAllocator
from ..status import StatusError, invalid as invalid_status
from .base import KindStrategy, Rollback
from .fields import Cause, Path, duplicate, forbidden, immutable, invalid, one_of, port_name, required
from .meta import as_dict, as_list, validate_labels
from .podspec import PROTOCOLS, validate_port_ref

log = logging.getLogger("apiserver.kinds.services")

TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
_IP_ERROR = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"

_ips = ServiceIPAllocator()
_ports = NodePortAllocator()


def configure(service_cidr: str, node_port_range: str | tuple[int, int]) -> None:
    global _ips, _ports
    _ips = ServiceIPAllocator(service_cidr)
    _ports = NodePortAllocator(node_port_range)


def _needs_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    return spec.get("type") in _NODE_PORT_TYPES


def _allocated_ip(spec: dict[str, Any]) -> str | None:
    ip = spec.get("clusterIP")
    return ip if _needs_ip(spec) and ip else None


def _node_ports(spec: dict[str, Any]) -> set[tuple[str, int]]:
    if not _needs_node_ports(spec):
        return set()
    return {(p.get("protocol", "TCP"), p["nodePort"]) for p in as_list(spec.get("ports"))
            if isinstance(p, dict) and isinstance(p.get("nodePort"), int)}


def held_allocations(obj: dict[str, Any]) -> dict[str, Owner]:
    """The allocation keys a stored Service holds (its ClusterIP, its node ports) within today's ranges,
    for the repair loop (apiserver/repair.py). Values outside the ranges (flags changed since) are logged."""
    spec, owner = as_dict(obj.get("spec")), _owner(obj)
    keys: dict[str, Owner] = {}
    ip = _allocated_ip(spec)
    try:
        if ip:
            _ips.check(ip)
            keys[IP_PREFIX + str(ipaddress.ip_address(ip))] = owner
    except (AllocationError, ValueError) as e:
        log.warning("service %s: cluster IP %s: %s", owner.name, ip, e)
    for protocol, port in _node_ports(spec):
        try:
            _ports.check(port)
            keys[NodePortAllocator.key(protocol, port)] = owner
        except AllocationError as e:
            log.warning("service %s: node port %s/%d: %s", owner.name, protocol, port, e)
    return keys


def _owner(obj: dict[str, Any]) -> Owner:
    meta = as_dict(obj.get("metadata"))
    return Owner(meta.get("uid", ""), f"{meta.get('namespace', '')}/{meta.get('name', '')}")


def _reject(obj: dict[str, Any], field: Path, value: Any, err: AllocationError) -> StatusError:
    if isinstance(err, RangeFull):
        return StatusError(500, "InternalError", f"Internal error occurred: {err}")
    cause = invalid(field, value, str(err))
    name = as_dict(obj.get("metadata")).get("name", "")
    return invalid_status("Service", name, [{"reason": cause["type"], "message": cause["message"],
                                             "field": cause["field"]}])


class ServiceStrategy(KindStrategy):
    kind = "Service"
    allow_create_on_update = True

    def name_errors(self, name: str) -> list[str]:
        return v.is_dns1035_label(name)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if spec is None:
            spec = obj["spec"] = {}
        if not isinstance(spec, dict):
            return
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["sessionAffinity"] == "ClientIP":
            cfg = spec.setdefault("sessionAffinityConfig", {})
            if isinstance(cfg, dict):
                client = cfg.setdefault("clientIP", {})
                if isinstance(client, dict):
                    client.setdefault("timeoutSeconds", 10800)
        for port in as_list(spec.get("ports")):
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if port.get("targetPort") in (None, 0, "") and "port" in port:
                    port["targetPort"] = port["port"]
        if spec["type"] == "ExternalName":
            return
        if spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        elif spec.get("clusterIPs") and not spec.get("clusterIP") and isinstance(spec["clusterIPs"], list):
            spec["clusterIP"] = spec["clusterIPs"][0]
        spec.setdefault("ipFamilies", [_ips.family])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] in _NODE_PORT_TYPES:
            spec.setdefault("externalTrafficPolicy", "Cluster")
        else:
            # Type-dependent field: left over when a NodePort Service becomes ClusterIP.
            spec.pop("externalTrafficPolicy", None)
        if spec["type"] == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        old_spec = as_dict((old or {}).get("spec"))
        path = Path("spec")
        causes: list[Cause] = []
        svc_type = spec.get("type", "ClusterIP")
        causes += one_of(path.child("type"), svc_type, TYPES)
        causes += one_of(path.child("sessionAffinity"), spec.get("sessionAffinity"), ("ClientIP", "None"))
        causes += one_of(path.child("externalTrafficPolicy"), spec.get("externalTrafficPolicy"), ("Cluster", "Local"))
        causes += one_of(path.child("internalTrafficPolicy"), spec.get("internalTrafficPolicy"), ("Cluster", "Local"))
        causes += validate_labels(spec.get("selector"), path.child("selector"))
        causes += self._validate_cluster_ip(spec, old_spec, path, svc_type)
        for i, ip in enumerate(as_list(spec.get("externalIPs"))):
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                causes.append(invalid(path.child("externalIPs").index(i), ip, _IP_ERROR))
        if svc_type == "ExternalName":
            name = spec.get("externalName")
            if not name:
                causes.append(required(path.child("externalName")))
            else:
                causes += [invalid(path.child("externalName"), name, e)
                           for e in v.is_dns1123_subdomain(name.rstrip("."))]
        elif not as_list(spec.get("ports")) and spec.get("clusterIP") != "None":
            causes.append(required(path.child("ports")))
        causes += self._validate_ports(as_list(spec.get("ports")), path.child("ports"), svc_type, old_spec)
        return causes

    @staticmethod
    def _validate_cluster_ip(spec: dict[str, Any], old_spec: dict[str, Any], path: Path,
                             svc_type: str) -> list[Cause]:
        causes: list[Cause] = []
        ip = spec.get("clusterIP", "")
        ips = as_list(spec.get("clusterIPs"))
        if svc_type == "ExternalName":
            if ip and ip != old_spec.get("clusterIP"):  # the old one is dropped on a type change
                causes.append(forbidden(path.child("clusterIP"), "may not be set for ExternalName services"))
            return causes
        if ips and ips[0] != ip:
            causes.append(invalid(path.child("clusterIPs"), ips, "first value must match `clusterIP`"))
        if ip == "None":
            if svc_type in _NODE_PORT_TYPES:
                causes.append(invalid(path.child("clusterIP"), ip, f"may not be set to 'None' for {svc_type} services"))
        elif ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                return causes + [invalid(path.child("clusterIPs").index(0), ip, _IP_ERROR)]
        old_ip = old_spec.get("clusterIP")
        if old_ip and old_spec.get("type") != "ExternalName" and ip and ip != old_ip:
            causes.append(immutable(path.child("clusterIP"), ip))
        elif ip and ip != "None" and ip != old_ip:
            try:
                _ips.check(ip)
            except AllocationError as e:
                causes.append(invalid(path.child("clusterIPs").index(0), ip, str(e)))
        return causes

    @staticmethod
    def _validate_ports(ports: list[Any], path: Path, svc_type: str, old_spec: dict[str, Any]) -> list[Cause]:
        causes: list[Cause] = []
        names: set[str] = set()
        seen: set[tuple[Any, Any]] = set()
        node_ports: set[tuple[Any, Any]] = set()
        old_node_ports = {n for _, n in _node_ports(old_spec)}
        for i, port in enumerate(ports):
            p = path.index(i)
            causes += port_name(p.child("name"), port.get("name") or "", names, len(ports) > 1)
            causes += [invalid(p.child("port"), port["port"], e) for e in v.is_valid_port_num(port["port"])]
            protocol = port.get("protocol", "TCP")
            causes += one_of(p.child("protocol"), protocol, PROTOCOLS)
            if (port["port"], protocol) in seen:
                causes.append(duplicate(p, {"port": port["port"], "protocol": protocol}))
            seen.add((port["port"], protocol))
            if port.get("targetPort") is not None:
                causes += validate_port_ref(port["targetPort"], p.child("targetPort"))
            node_port = port.get("nodePort")
            if not node_port:
                continue
            np = p.child("nodePort")
            if svc_type not in _NODE_PORT_TYPES:
                if node_port not in old_node_ports:  # an old allocation is dropped on a type change
                    causes.append(forbidden(np, f"may not be used when `type` is '{svc_type}'"))
                continue
            if (node_port, protocol) in node_ports:
                causes.append(duplicate(np, node_port))
            node_ports.add((node_port, protocol))
            if node_port not in old_node_ports:
                try:
                    _ports.check(node_port)
                except AllocationError as e:
                    causes.append(invalid(np, node_port, str(e)))
        return causes

    # -- allocation -------------------------------------------------------------------------

    async def begin_create(self, obj: dict[str, Any], storage: Any) -> Rollback:
        return await _Allocation(obj, storage).apply(None)

    async def begin_update(self, obj: dict[str, Any], old: dict[str, Any], storage: Any) -> Rollback:
        return await _Allocation(obj, storage).apply(old)

    async def after_delete(self, obj: dict[str, Any], storage: Any) -> None:
        spec, owner = as_dict(obj.get("spec")), _owner(obj)
        ip = _allocated_ip(spec)
        if ip:
            await _ips.release(storage, ip, owner)
        for protocol, port in _node_ports(spec):
            await _ports.release(storage, protocol, port, owner)


class _Allocation:
    """One create/update's reservations, so that a failure part-way gives back what it took."""

    def __init__(self, obj: dict[str, Any], storage: Any):
        self.obj, self.storage, self.owner = obj, storage, _owner(obj)
        self.spec: dict[str, Any] = obj["spec"]
        self.taken_ips: list[str] = []
        self.taken_ports: list[tuple[str, int]] = []
        self.freed_ips: list[str] = []
        self.freed_ports: list[tuple[str, int]] = []

    async def apply(self, old: dict[str, Any] | None) -> Rollback:
        old_spec = as_dict((old or {}).get("spec"))
        try:
            await self._cluster_ip(old_spec)
            await self._node_ports(old_spec)
        except BaseException:
            await self.rollback()
            raise
        return self.rollback

    async def _cluster_ip(self, old_spec: dict[str, Any]) -> None:
        spec = self.spec
        old_ip = _allocated_ip(old_spec)
        kept = old_spec.get("clusterIP") if old_spec.get("type") != "ExternalName" else None
        if kept and not spec.get("clusterIP") and spec.get("type") != "ExternalName":
            # An update that omits the clusterIP keeps the Service's (a headless one stays headless).
            spec["clusterIP"], spec["clusterIPs"] = kept, [kept]
        if not _needs_ip(spec):
            if spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            if spec.get("type") == "ExternalName":
                for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
                    spec.pop(field, None)
            if old_ip:
                await _ips.release(self.storage, old_ip, self.owner)
                self.freed_ips.append(old_ip)
            return
        if old_ip and spec.get("clusterIP") == old_ip:
            return
        requested = spec.get("clusterIP")
        if requested:
            try:
                ip = await _ips.reserve(self.storage, requested, self.owner)
            except AllocationError as e:
                raise _reject(self.obj, Path("spec").child("clusterIPs").index(0), requested, e) from None
        else:
            try:
                ip = await _ips.allocate(self.storage, self.owner)
            except RangeFull as e:
                raise _reject(self.obj, Path("spec").child("clusterIP"), "", e) from None
        self.taken_ips.append(ip)
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]

    async def _node_ports(self, old_spec: dict[str, Any]) -> None:
        old = _node_ports(old_spec)
        old_by_port = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                       for p in as_list(old_spec.get("ports")) if isinstance(p, dict)} if old else {}
        ports = as_list(self.spec.get("ports"))
        wanted = _needs_node_ports(self.spec)
        for i, port in enumerate(ports):
            protocol = port.get("protocol", "TCP")
            if not wanted:
                if port.get("nodePort") and (protocol, port["nodePort"]) in old:
                    del port["nodePort"]
                continue
            node_port = port.get("nodePort") or old_by_port.get((port.get("port"), protocol))
            field = Path("spec").child("ports").index(i).child("nodePort")
            if node_port and (protocol, node_port) in old:
                port["nodePort"] = node_port
                continue
            try:
                if node_port:
                    await _ports.reserve(self.storage, protocol, node_port, self.owner)
                else:
                    node_port = await _ports.allocate(self.storage, protocol, self.owner)
            except AllocationError as e:
                raise _reject(self.obj, field, node_port or 0, e) from None
            self.taken_ports.append((protocol, node_port))
            port["nodePort"] = node_port
        for protocol, node_port in old - _node_ports(self.spec):
            await _ports.release(self.storage, protocol, node_port, self.owner)
            self.freed_ports.append((protocol, node_port))

    async def rollback(self) -> None:
        for ip in self.taken_ips:
            await _ips.release(self.storage, ip, self.owner)
        for protocol, port in self.taken_ports:
            await _ports.release(self.storage, protocol, port, self.owner)
        # What an update gave back is taken again; if someone got it meanwhile, say so.
        for ip in self.freed_ips:
            try:
                await _ips.reserve(self.storage, ip, self.owner)
            except AllocationError as e:
                log.warning("service %s: could not re-reserve cluster IP %s after a failed update: %s",
                            self.owner.name, ip, e)
        for protocol, port in self.freed_ports:
            try:
                await _ports.reserve(self.storage, protocol, port, self.owner)
            except AllocationError as e:
                log.warning("service %s: could not re-reserve node port %s/%s after a failed update: %s",
                            self.owner.name, protocol, port, e)
        self.taken_ips, self.taken_ports, self.freed_ips, self.freed_ports = [], [], [], []
