"""Pods' hostPorts: the node DNATs hostIP:hostPort to podIP:containerPort, as the CNI portmap plugin does.

The proxy already owns what this needs -- an nftables table hooked before routing and on local output,
`route_localnet` for 127.0.0.1, the drop of undnat'ed traffic to 127.0.0.0/8 from other interfaces, the
masquerade mark and the hairpin set -- so a pod's hostPorts are one more `rules.Fragment` in that table,
synced (partially) like a Service's. hostIP 0.0.0.0 (or none) publishes on every address of the node,
127.0.0.1 included, as Docker's `-p` does; another hostIP on that address only. Connections from the
node itself are masqueraded (their source may be 127.0.0.1, which the pod cannot answer); others keep
the client's address. Pure functions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .rules import HOSTPORT_IPS, HOSTPORTS, Fragment, ELEMENT_MAPS
from .slices import is_ipv4

Obj = dict[str, Any]

_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
ANY = "0.0.0.0"


@dataclass(frozen=True)
class HostPort:
    protocol: str  # nft spelling
    host_ip: str  # ANY: every local address
    host_port: int
    pod_ip: str
    container_port: int


def pod_key(pod: Obj) -> str:
    """The fragment key of a pod's hostPorts in the table's state ("pod:" never starts a Service key)."""
    meta = pod.get("metadata") or {}
    return f"pod:{meta.get('namespace', '')}/{meta.get('name', '')}"


def _valid_port(value: Any) -> bool:
    return isinstance(value, int) and 0 < value < 65536


def host_ports(pod: Obj) -> list[HostPort]:
    """The hostPorts to publish for a pod: none until it has an IP, once it has finished, or when it uses
    the node's network (it binds the host's ports itself)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    pod_ip = status.get("podIP") or ""
    if spec.get("hostNetwork") or not is_ipv4(pod_ip) or status.get("phase") in ("Succeeded", "Failed"):
        return []
    if not (_NAME.match(meta.get("namespace") or "") and _NAME.match(meta.get("name") or "")):
        return []
    out = set()
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            proto = _PROTOCOLS.get(p.get("protocol") or "TCP")
            host_ip = p.get("hostIP") or ANY
            if proto is None or not _valid_port(p.get("hostPort")) or not _valid_port(p.get("containerPort")) \
                    or not is_ipv4(host_ip):
                continue
            out.add(HostPort(proto, host_ip, int(p["hostPort"]), pod_ip, int(p["containerPort"])))
    return sorted(out, key=lambda h: (h.protocol, h.host_port, h.host_ip))


def fragment(pod: Obj) -> Fragment | None:
    """The chains and map elements of a pod's hostPorts, or None when it publishes none."""
    ports = host_ports(pod)
    if not ports:
        return None
    key = pod_key(pod)
    frag = Fragment([], elements={m: {} for m in ELEMENT_MAPS}, key=key)
    for hp in ports:
        chain = f"hostport-{key[len('pod:'):]}/{hp.protocol}/{hp.host_ip}/{hp.host_port}"
        frag.chains[chain] = ["fib saddr type local jump mark-for-masquerade",
                              f"meta l4proto {hp.protocol} dnat ip to {hp.pod_ip}:{hp.container_port}"]
        if hp.host_ip == ANY:
            frag.elements[HOSTPORTS][f"{hp.protocol} . {hp.host_port}"] = f"goto {chain}"
        else:
            frag.elements[HOSTPORT_IPS][f"{hp.host_ip} . {hp.protocol} . {hp.host_port}"] = f"goto {chain}"
    # The pod reaching its own hostPort through a node address: masquerade, so the reply goes back the same way.
    frag.hairpin = frozenset({ports[0].pod_ip})
    # UDP flows conntrack would keep sending to this pod once it is gone (matched by port and DNAT target).
    frag.udp_flows = frozenset(("nodeport", hp.host_port, hp.pod_ip) for hp in ports if hp.protocol == "udp")
    return frag
