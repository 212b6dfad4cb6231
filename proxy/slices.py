"""EndpointSlices -> the endpoints that serve one Service port, with kube-proxy's rules (pure).

A Service's endpoints are spread over any number of slices labelled `kubernetes.io/service-name`; they
are merged per Service port (matched by port name and protocol, each slice carrying the resolved target
port of its endpoints, so a named targetPort may map to different numbers per pod). Conditions follow
the EndpointSlice API: `ready` absent means ready, `serving` absent means the same as ready, `terminating`
absent means not terminating. Like kube-proxy, traffic goes to ready endpoints, and only when there is
none to endpoints that are still serving while terminating (so connections drain during a rollout
instead of being refused).
"""
from __future__ import annotations

import re
from typing import Any, Iterable, NamedTuple

from pklib.api.wellknown import SERVICE_NAME_LABEL

Obj = dict[str, Any]


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def is_ipv4(ip: Any) -> bool:
    # A regex, not ipaddress: this runs for every endpoint of every changed Service, and ipaddress is ~20x slower.
    return isinstance(ip, str) and _IPV4.fullmatch(ip) is not None


def ip_key(ip: str) -> tuple[int, ...]:
    """Numeric sort key of a dotted IPv4 address."""
    return tuple(map(int, ip.split(".")))


class Endpoint(NamedTuple):  # a tuple: cheap to make, hash and sort
    ip: str
    port: int
    node_name: str = ""


def service_key(slice_: Obj) -> str | None:
    """"namespace/service" a slice belongs to, or None when it is not labelled with a Service."""
    meta = slice_.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace', '')}/{name}" if name else None


def group_by_service(slices: Iterable[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for s in slices:
        key = service_key(s)
        if key is not None:
            out.setdefault(key, []).append(s)
    return out


def versions(slices: Iterable[Obj]) -> tuple[tuple[str, str], ...]:
    """(name, resourceVersion) of each slice, sorted: equal when nothing in the Service's slices changed."""
    return tuple(sorted((str((s.get("metadata") or {}).get("name") or ""),
                         str((s.get("metadata") or {}).get("resourceVersion") or "")) for s in slices))


def _flag(conditions: Obj, name: str, default: bool) -> bool:
    value = conditions.get(name)
    return default if value is None else bool(value)


def endpoints_for(slices: Iterable[Obj], port_name: str, protocol: str) -> list[Endpoint]:
    """Endpoints for one Service port: the ready ones, else the serving-while-terminating ones. Sorted.

    The same address may be listed by two slices while the controller moves it: it counts once (as in
    kube-proxy, endpoints are identified by address and port).
    """
    ready: list[Endpoint] = []
    terminating: list[Endpoint] = []
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        port = _slice_port(s, port_name, protocol)
        if port is None:
            continue
        for ep in s.get("endpoints") or []:
            addresses = ep.get("addresses") or []
            # One malformed address must not break the transaction for every Service: skip it.
            if not addresses or not is_ipv4(addresses[0]):
                continue
            cond = ep.get("conditions") or {}
            is_ready = _flag(cond, "ready", True)
            found = Endpoint(addresses[0], port, str(ep.get("nodeName") or ""))
            if is_ready:
                ready.append(found)
            elif _flag(cond, "serving", is_ready) and _flag(cond, "terminating", False):
                terminating.append(found)
    return _unique(ready or terminating)


def _unique(endpoints: list[Endpoint]) -> list[Endpoint]:
    """One endpoint per address and port, sorted. Listed twice (two slices, or two nodes while a pod IP is
    reused), the same one is kept whatever the order of the slices: the ruleset must be deterministic."""
    chosen: dict[tuple[str, int], Endpoint] = {}
    for ep in sorted(endpoints):
        chosen.setdefault((ep.ip, ep.port), ep)
    return sorted(chosen.values())


def _slice_port(slice_: Obj, port_name: str, protocol: str) -> int | None:
    for p in slice_.get("ports") or []:
        if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
            port = p.get("port")
            if isinstance(port, int) and 0 < port < 65536:
                return port
    return None


def local_endpoints(slices: Iterable[Obj], port_name: str, protocol: str, node_name: str) -> list[Endpoint]:
    """This node's endpoints for externalTrafficPolicy Local: its ready ones, else its serving-terminating ones.

    Chosen among this node's endpoints alone (not filtered from the cluster-wide choice), as kube-proxy
    does: a node whose endpoints all terminate keeps serving its external clients while others are ready.
    """
    if not node_name:
        return []
    here = [{**s, "endpoints": [ep for ep in s.get("endpoints") or [] if ep.get("nodeName") == node_name]}
            for s in slices]
    return endpoints_for(here, port_name, protocol)
