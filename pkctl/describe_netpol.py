"""The Spec part of `pkctl describe networkpolicy`, worded and indented as kubectl's describer writes it (fixed
indentation, no tab alignment). Pure: a NetworkPolicy spec in, lines out."""
from __future__ import annotations

from typing import Any

from pklib.api.networkpolicy import EGRESS, INGRESS, policy_types
from pklib.columns import selector_string

Obj = dict[str, Any]
_INDENT = "    "


def _ports(rule: Obj, to: str) -> list[str]:
    ports = rule.get("ports") or []
    if not ports:
        return [f"{_INDENT}{to} Port: <any> (traffic allowed to all ports)"]
    out = []
    for p in ports:
        proto = p.get("protocol") or "TCP"
        port = p.get("port", "")
        if p.get("endPort") is not None:
            out.append(f"{_INDENT}{to} Port Range: {port}-{p['endPort']}/{proto}")
        else:
            out.append(f"{_INDENT}{to} Port: {port}/{proto}")
    return out


def _peers(rule: Obj, field: str, title: str, unrestricted: str) -> list[str]:
    peers = rule.get(field) or []
    if not peers:
        return [f"{_INDENT}{title}: <any> ({unrestricted})"]
    out = []
    inner = _INDENT + "  "
    for peer in peers:
        out.append(f"{_INDENT}{title}:")
        if "namespaceSelector" in peer:
            out.append(f"{inner}NamespaceSelector: {selector_string(peer['namespaceSelector'])}")
        if "podSelector" in peer:
            out.append(f"{inner}PodSelector: {selector_string(peer['podSelector'])}")
        if "ipBlock" in peer and not ("podSelector" in peer or "namespaceSelector" in peer):
            block = peer["ipBlock"] or {}
            out += [f"{inner}IPBlock:", f"{inner}  CIDR: {block.get('cidr', '')}",
                    f"{inner}  Except: {', '.join(block.get('except') or [])}"]
    return out


def _direction(rules: list[Obj], ingress: bool) -> list[str]:
    kind = "ingress" if ingress else "egress"
    if not rules:
        return [f"{_INDENT}<none> (Selected pods are isolated for {kind} connectivity)"]
    out: list[str] = []
    for i, rule in enumerate(rules):
        # kubectl names an ingress rule's ports "To Port" too: they are the selected pods' own.
        out += _ports(rule, "To")
        out += (_peers(rule, "from", "From", "traffic not restricted by source") if ingress
                else _peers(rule, "to", "To", "traffic not restricted by destination"))
        if i != len(rules) - 1:
            out.append(f"{_INDENT}----------")
    return out


def spec_lines(policy: Obj) -> list[str]:
    spec = policy.get("spec") or {}
    selector = spec.get("podSelector") or {}
    shown = selector_string(selector) if selector.get("matchLabels") or selector.get("matchExpressions") else \
        "<none> (Allowing the specific traffic to all pods in this namespace)"
    lines = ["Spec:", f"  PodSelector:     {shown}"]
    types = policy_types(policy)
    for kind, field in ((INGRESS, "ingress"), (EGRESS, "egress")):
        if kind in types:
            lines.append(f"  Allowing {field} traffic:")
            lines += _direction(spec.get(field) or [], kind == INGRESS)
        else:
            lines.append(f"  Not affecting {field} traffic")
    lines.append(f"  Policy Types: {', '.join(spec.get('policyTypes') or types)}")
    return lines
