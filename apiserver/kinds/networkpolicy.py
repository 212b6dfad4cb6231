"""networking.k8s.io/v1 NetworkPolicy: which traffic the pods a selector picks may receive and send.

Defaults (pklib/api/networkpolicy.py): an empty podSelector, TCP ports, policyTypes from the rules. Validation
follows Kubernetes' ValidateNetworkPolicySpec: valid selectors, ports of protocol TCP/UDP/SCTP with a number
or an IANA name (endPort only after a number, and not below it), peers naming exactly an ipBlock or selectors,
ipBlock CIDRs whose `except` entries are strict subsets of `cidr`, and policyTypes Ingress/Egress.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from pklib import validation as v
from pklib.api.networkpolicy import POLICY_TYPES, PROTOCOLS, apply_defaults

from .base import KindStrategy
from .fields import Cause, Path, forbidden, invalid, not_supported, required
from .meta import as_dict, as_list
from .workloads import validate_selector

_CIDR_ERROR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def _port_causes(port: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        causes.append(not_supported(path.child("protocol"), protocol, PROTOCOLS))
    number, end = port.get("port"), port.get("endPort")
    if number is None:
        if end is not None:
            causes.append(invalid(path.child("endPort"), end, "may not be specified when `port` is not specified"))
    elif isinstance(number, int):
        causes += [invalid(path.child("port"), number, e) for e in v.is_valid_port_num(number)]
        if end is not None:
            if end < number:
                causes.append(invalid(path.child("endPort"), end, "must be greater than or equal to `port`"))
            causes += [invalid(path.child("endPort"), end, e) for e in v.is_valid_port_num(end)]
    else:
        if end is not None:
            causes.append(invalid(path.child("endPort"), end, "may not be specified when `port` is non-numeric"))
        causes += [invalid(path.child("port"), number, e) for e in v.is_valid_port_name(number)]
    return causes


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _ip_block_causes(block: dict[str, Any], path: Path) -> list[Cause]:
    cidr = block.get("cidr") or ""
    if not cidr:
        return [required(path.child("cidr"))]
    net = _network(cidr) if "/" in cidr else None
    if net is None:
        return [invalid(path.child("cidr"), cidr, _CIDR_ERROR)]
    causes: list[Cause] = []
    for i, text in enumerate(as_list(block.get("except"))):
        hole = _network(text) if "/" in text else None
        if hole is None:
            causes.append(invalid(path.child("except").index(i), text, _CIDR_ERROR))
        elif hole.version != net.version or not net.supernet_of(hole) or hole.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
            causes.append(invalid(path.child("except").index(i), text, "must be a strict subset of `cidr`"))
    return causes


def _peer_causes(peer: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for field in ("podSelector", "namespaceSelector"):
        if isinstance(peer.get(field), dict):
            causes += validate_selector(peer[field], path.child(field))
    if isinstance(peer.get("ipBlock"), dict):
        causes += _ip_block_causes(peer["ipBlock"], path.child("ipBlock"))
    given = [f for f in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(f) is not None]
    if not given:
        causes.append(required(path, "must specify a peer"))
    elif len(given) > 1 and "ipBlock" in given:
        causes.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return causes


class NetworkPolicyStrategy(KindStrategy):
    kind = "NetworkPolicy"

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        apply_defaults(obj)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        causes = validate_selector(as_dict(spec.get("podSelector")), path.child("podSelector"))
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(as_list(spec.get(direction))):
                rule_path = path.child(direction).index(i)
                for j, port in enumerate(as_list(as_dict(rule).get("ports"))):
                    causes += _port_causes(as_dict(port), rule_path.child("ports").index(j))
                for j, peer in enumerate(as_list(as_dict(rule).get(peers))):
                    causes += _peer_causes(as_dict(peer), rule_path.child(peers).index(j))
        types = as_list(spec.get("policyTypes"))
        if len(types) > len(POLICY_TYPES):
            causes.append(invalid(path.child("policyTypes"), types, "may not specify more than two policyTypes"))
            return causes
        for i, kind in enumerate(types):
            if kind not in POLICY_TYPES:
                causes.append(not_supported(path.child("policyTypes").index(i), kind, POLICY_TYPES))
        return causes
