"""Endpoints and EndpointSlice: addresses must be IPs, ports in range, names unique."""
from __future__ import annotations

import ipaddress
from typing import Any

from pklib import validation as v

from .base import KindStrategy
from .fields import Cause, Path, immutable, invalid, one_of, port_name, required
from .meta import as_dict, as_list
from .podspec import PROTOCOLS

_IP_ERROR = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
_MAX_SLICE_ADDRESSES = 100


def _validate_ports(ports: list[Any], path: Path, *, port_required: bool) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = path.index(i)
        causes += port_name(p.child("name"), port.get("name") or "", names, port_required and len(ports) > 1)
        if port.get("port") is not None:
            causes += [invalid(p.child("port"), port["port"], e) for e in v.is_valid_port_num(port["port"])]
        causes += one_of(p.child("protocol"), port.get("protocol"), PROTOCOLS)
    return causes


def _ip_errors(ip: str, path: Path, family: int | None = None) -> list[Cause]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return [invalid(path, ip, _IP_ERROR)]
    if family is not None and addr.version != family:
        return [invalid(path, ip, f"must be an IPv{family} address")]
    return []


class EndpointsStrategy(KindStrategy):
    kind = "Endpoints"
    allow_create_on_update = True

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        for subset in as_list(obj.get("subsets")):
            for port in as_list(as_dict(subset).get("ports")):
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes: list[Cause] = []
        for i, subset in enumerate(as_list(obj.get("subsets"))):
            p = Path("subsets").index(i)
            for field in ("addresses", "notReadyAddresses"):
                for j, addr in enumerate(as_list(subset.get(field))):
                    causes += _ip_errors(addr["ip"], p.child(field).index(j).child("ip"))
                    if addr.get("nodeName"):
                        causes += [invalid(p.child(field).index(j).child("nodeName"), addr["nodeName"], e)
                                   for e in v.is_dns1123_subdomain(addr["nodeName"])]
            causes += _validate_ports(as_list(subset.get("ports")), p.child("ports"), port_required=True)
        return causes


class EndpointSliceStrategy(KindStrategy):
    kind = "EndpointSlice"

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        # Always serialized by Kubernetes (no omitempty); strict clients require the list even when empty.
        obj.setdefault("endpoints", [])
        for port in as_list(obj.get("ports")):
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                # Kubernetes defaults an unnamed port's name to "": clients (kubectl describe) read it unchecked.
                port.setdefault("name", "")

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        address_type = obj["addressType"]
        causes = one_of(Path("addressType"), address_type, ADDRESS_TYPES)
        family = {"IPv4": 4, "IPv6": 6}.get(address_type)
        for i, ep in enumerate(as_list(obj.get("endpoints"))):
            p = Path("endpoints").index(i).child("addresses")
            addresses = as_list(ep.get("addresses"))
            if not addresses:
                causes.append(required(p))
            elif len(addresses) > _MAX_SLICE_ADDRESSES:
                causes.append(invalid(p, len(addresses), f"must have at most {_MAX_SLICE_ADDRESSES} items"))
            for j, addr in enumerate(addresses):
                if family is not None:
                    causes += _ip_errors(addr, p.index(j), family)
                else:
                    causes += [invalid(p.index(j), addr, e) for e in v.is_dns1123_subdomain(addr)]
        causes += _validate_ports(as_list(obj.get("ports")), Path("ports"), port_required=False)
        if old is not None and old.get("addressType") != address_type:
            causes.append(immutable(Path("addressType"), address_type))
        return causes
