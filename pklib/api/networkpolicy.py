"""NetworkPolicy semantics (networking.k8s.io/v1) shared by the apiserver (defaults, validation) and the node
component that enforces policies (proxy/netpol.py): which pods a policy selects and isolates in which
direction, which pods and addresses a peer names, what a port entry allows.

Kubernetes' rules, in short: a pod no policy selects is not isolated. A pod some policy selects with
`Ingress` (`Egress`) in its policyTypes is isolated in that direction and accepts (sends) only what at
least one of those policies allows: policies add up, they never deny. A peer with only `podSelector`
means pods of the policy's own namespace; with only `namespaceSelector`, every pod of the namespaces it
selects; with both, the pods it selects in those namespaces; `ipBlock` is a CIDR minus its `except` CIDRs.
A rule without peers allows any peer, a rule without ports any port, a policy without rules nothing.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from pklib.selectors import LabelSelector, SelectorError, selector_from_match

Obj = dict[str, Any]

INGRESS, EGRESS = "Ingress", "Egress"
POLICY_TYPES = (INGRESS, EGRESS)
PROTOCOLS = ("TCP", "UDP", "SCTP")
# Every namespace carries its own name as this label (Kubernetes sets it), so policies can select by name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _spec(policy: Obj) -> Obj:
    spec = policy.get("spec")
    return spec if isinstance(spec, dict) else {}


def apply_defaults(policy: Obj) -> None:
    """Kubernetes' defaults: an empty podSelector, TCP for ports without a protocol, and policyTypes
    `[Ingress]` (plus `Egress` when the policy has egress rules) when none are given."""
    spec = policy.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("podSelector", {})
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in (rule.get("ports") or []) if isinstance(rule, dict) else []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = [INGRESS] + ([EGRESS] if spec.get("egress") else [])


def policy_types(policy: Obj) -> tuple[str, ...]:
    """The directions the policy isolates its pods in (the stored policyTypes, else the default's)."""
    spec = _spec(policy)
    types = spec.get("policyTypes")
    if types:
        return tuple(t for t in POLICY_TYPES if t in types)
    return (INGRESS, EGRESS) if spec.get("egress") else (INGRESS,)


def _selector(sel: Any) -> LabelSelector | None:
    """The selector of a metav1.LabelSelector; None when it cannot match anything (invalid)."""
    try:
        return selector_from_match(sel if isinstance(sel, dict) else {})
    except SelectorError:
        return None


def _labels(obj: Obj) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _namespace(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def namespace_labels(namespace: Obj) -> dict[str, str]:
    """A namespace's labels including `kubernetes.io/metadata.name` (even on objects written without it)."""
    name = str((namespace.get("metadata") or {}).get("name") or "")
    return {**_labels(namespace), NAMESPACE_NAME_LABEL: name}


def selects(policy: Obj, pod: Obj) -> bool:
    """Whether the policy applies to the pod: same namespace and its podSelector matches the pod's labels."""
    if _namespace(pod) != _namespace(policy):
        return False
    sel = _selector(_spec(policy).get("podSelector"))
    return sel is not None and sel.matches(_labels(pod))


def pod_ips(pod: Obj) -> list[str]:
    """The pod's IPv4 addresses while it may use them: none for host-network pods (their address is the
    node's) and finished pods (their address may already be someone else's)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return []
    ips = [str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return [ip for ip in ips if ":" not in ip]


def block_networks(block: Obj) -> list[ipaddress.IPv4Network]:
    """An ipBlock's IPv4 addresses as disjoint networks: `cidr` minus every `except` (IPv6 blocks: none)."""
    try:
        nets = [ipaddress.ip_network(str(block.get("cidr", "")), strict=False)]
    except ValueError:
        return []
    for text in block.get("except") or []:
        try:
            hole = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            continue
        kept: list[Any] = []
        for net in nets:
            if net.version == hole.version and hole.subnet_of(net):  # type: ignore[arg-type]
                kept += net.address_exclude(hole)  # type: ignore[arg-type]
            elif net.version == hole.version and net.subnet_of(hole):  # type: ignore[arg-type]
                continue
            else:
                kept.append(net)
        nets = kept
    return sorted(n for n in nets if isinstance(n, ipaddress.IPv4Network))


@dataclass(frozen=True)
class PortRule:
    """One entry of a rule's `ports`: a protocol with a port, a port range, a named port or any port."""
    protocol: str  # TCP/UDP/SCTP
    port: int = 0  # 0: every port of the protocol
    end_port: int = 0  # 0: just `port`
    name: str = ""  # a named port: resolved against the destination pod's container ports


def port_rules(rule: Obj) -> list[PortRule]:
    """The rule's port entries; [] means every port and protocol."""
    out = []
    for entry in rule.get("ports") or []:
        protocol = str(entry.get("protocol") or "TCP")
        port = entry.get("port")
        if isinstance(port, str) and not port.isdigit():
            out.append(PortRule(protocol, name=port))
        else:
            number = int(port) if port is not None else 0
            out.append(PortRule(protocol, number, int(entry.get("endPort") or 0)))
    return out


def named_port(pod: Obj, name: str, protocol: str) -> int | None:
    """The number of the pod's container port of this name and protocol, None when it has none."""
    for ctr in (pod.get("spec") or {}).get("containers") or []:
        for p in ctr.get("ports") or []:
            if p.get("name") == name and (p.get("protocol") or "TCP") == protocol and p.get("containerPort"):
                return int(p["containerPort"])
    return None


def by_namespace(pods: Iterable[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for pod in pods:
        out.setdefault(_namespace(pod), []).append(pod)
    return out


def peer_pods(peer: Obj, policy_namespace: str, pods_by_namespace: Mapping[str, list[Obj]],
              namespaces: Mapping[str, Obj]) -> list[Obj]:
    """The pods a podSelector/namespaceSelector peer names (an ipBlock peer names none); `pods_by_namespace`
    as by_namespace() gives it."""
    if "ipBlock" in peer or ("podSelector" not in peer and "namespaceSelector" not in peer):
        return []
    pod_sel = _selector(peer.get("podSelector")) if "podSelector" in peer else None
    if "podSelector" in peer and pod_sel is None:
        return []
    if "namespaceSelector" in peer:
        ns_sel = _selector(peer.get("namespaceSelector"))
        if ns_sel is None:
            return []
        chosen = {name for name, ns in namespaces.items() if ns_sel.matches(namespace_labels(ns))}
    else:
        chosen = {policy_namespace}
    return [p for ns in sorted(chosen) for p in pods_by_namespace.get(ns, [])
            if pod_sel is None or pod_sel.matches(_labels(p))]
