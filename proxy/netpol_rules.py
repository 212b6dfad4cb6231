"""From NetworkPolicies, pods and namespaces to this node's `pkube-netpol` nftables table: pure functions.

The table (ip family) has two base chains on the forward hook, where pod traffic passes whether it is bridged
between two pods of this node (br_netfilter hands bridged IPv4 to the ip hooks) or routed to and from other
nodes and the outside:

* `ingress`: established/related packets pass; otherwise `ip daddr vmap @ingress-pods` jumps, for a local
  pod some policy isolates for ingress, to its chain `pod-in-<ns>/<pod>`: the pod's own address passes (a pod
  cannot block itself, e.g. through its own Service), then one `jump pol-in-<ns>/<policy>` per policy that
  selects it, then `drop`. A policy chain `accept`s what one of its rules allows (accept ends this base chain
  only; the other one still judges the packet).
* `egress`: the same from `ip saddr vmap @egress-pods` with `pod-out-...` and `pol-out-...` chains.

A rule's peers are a set (`peers-...`) of the addresses of the pods its selectors name, so a pod coming,
going or changing address only changes a set element, and an interval set (`blocks-...`) of its ipBlocks'
ranges; a rule without peers matches any address. Its ports
become one nft rule each (`meta l4proto tcp th dport 80-90`); a named port becomes a set of
(destination address . protocol . port) resolved against the destination pods' container ports (the
policy's own pods for ingress, the peer pods for egress). Pods no policy selects have no map element and
are not touched. Traffic the node itself sends (kubelet probes, host processes) goes through the output
hook, never filtered here, and traffic from a pod to its own node is not forwarded: Kubernetes always allows
both.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from pklib.api import networkpolicy as np

Obj = dict[str, Any]

INGRESS_MAP, EGRESS_MAP = "ingress-pods", "egress-pods"
MAPS = (INGRESS_MAP, EGRESS_MAP)
_MAP_DECL = "type ipv4_addr : verdict;"
PEERS_DECL = "type ipv4_addr;"
BLOCKS_DECL = "type ipv4_addr; flags interval;"
NAMED_PORTS_DECL = "type ipv4_addr . inet_proto . inet_service;"
_MAX_NAME = 200  # nft allows 256; long pod/policy names are hashed instead
_HOOK = "type filter hook forward priority filter; policy accept;"


@dataclass
class Direction:
    """What differs between ingress and egress."""
    kind: str  # np.INGRESS / np.EGRESS
    short: str  # "in" / "out": in chain and set names
    rules_field: str  # "ingress" / "egress"
    peers_field: str  # "from" / "to"
    local: str  # "daddr": the isolated pod's end of the packet
    remote: str  # "saddr": the peer's end
    map: str


INGRESS = Direction(np.INGRESS, "in", "ingress", "from", "daddr", "saddr", INGRESS_MAP)
EGRESS = Direction(np.EGRESS, "out", "egress", "to", "saddr", "daddr", EGRESS_MAP)


@dataclass
class Ruleset:
    """Everything the table holds: chains (name -> rules; a base chain starts with its hook line), sets
    (name -> (declaration, elements)) and the two pod maps (address -> verdict)."""
    table: str
    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=lambda: {m: {} for m in MAPS})


def name(prefix: str, key: str) -> str:
    """An nft chain or set name for an object key ("ns/name"), readable unless too long."""
    text = f"{prefix}-{key}"
    if len(text) <= _MAX_NAME:
        return text
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def elements(networks: Iterable[ipaddress.IPv4Network]) -> frozenset[str]:
    """Interval-set elements that never overlap (nft refuses overlapping intervals): collapsed networks."""
    return frozenset(str(n) if n.prefixlen < 32 else str(n.network_address)
                     for n in ipaddress.collapse_addresses(networks))


@dataclass
class Cluster:
    """The informers' view a ruleset is computed from."""
    node: str
    pods: list[Obj]
    namespaces: Mapping[str, Obj]  # name -> Namespace
    policies: list[Obj]

    @functools.cached_property
    def by_namespace(self) -> dict[str, list[Obj]]:
        return np.by_namespace(self.pods)

    @functools.cached_property
    def _ips(self) -> dict[int, list[str]]:
        return {id(p): np.pod_ips(p) for p in self.pods}

    def ips(self, pod: Obj) -> list[str]:
        """np.pod_ips of one of `pods`, worked out once per build (peers name the same pods many times)."""
        return self._ips[id(pod)]

    def local_pods(self) -> list[Obj]:
        return [p for p in self.pods if (p.get("spec") or {}).get("nodeName") == self.node and self.ips(p)]


def _port_match(port: np.PortRule, named_set: str | None) -> str:
    proto = port.protocol.lower()
    if port.name:
        return f"ip daddr . meta l4proto . th dport @{named_set}"
    if not port.port:
        return f"meta l4proto {proto}"
    ports = f"{port.port}-{port.end_port}" if port.end_port and port.end_port > port.port else str(port.port)
    return f"meta l4proto {proto} th dport {ports}"


def _policy_chain(policy: Obj, d: Direction, cluster: Cluster, out: Ruleset) -> str:
    """Adds the chain (and sets) of one policy in one direction; returns the chain's name."""
    key = _key(policy)
    chain = name(f"pol-{d.short}", key)
    ns = (policy.get("metadata") or {}).get("namespace", "")
    rules: list[str] = []
    own_pods: list[Obj] | None = None  # the policy's pods, for ingress named ports (found once, when needed)
    for i, rule in enumerate((policy.get("spec") or {}).get(d.rules_field) or []):
        peers = rule.get(d.peers_field) or []
        peer_matches = [""]  # no peers: any address
        peer_pods: list[Obj] = []
        if peers:
            # Pod addresses in a plain hash set (a pod coming or going is one cheap element change), ipBlocks in
            # an interval set: one nft rule each, either may match.
            nets: list[ipaddress.IPv4Network] = []
            selectors = False
            for peer in peers:
                if isinstance(peer.get("ipBlock"), dict):
                    nets += np.block_networks(peer["ipBlock"])
                else:
                    selectors = True
                    peer_pods += np.peer_pods(peer, ns, cluster.by_namespace, cluster.namespaces)
            peer_matches = []
            if selectors:
                pods_set = name(f"peers-{d.short}", f"{key}/{i}")
                out.sets[pods_set] = (PEERS_DECL, frozenset(ip for p in peer_pods for ip in cluster.ips(p)))
                peer_matches.append(f"ip {d.remote} @{pods_set} ")
            if any(isinstance(peer.get("ipBlock"), dict) for peer in peers):
                blocks_set = name(f"blocks-{d.short}", f"{key}/{i}")
                out.sets[blocks_set] = (BLOCKS_DECL, elements(nets))
                peer_matches.append(f"ip {d.remote} @{blocks_set} ")
        ports = np.port_rules(rule)
        if not ports:
            rules += [f"{m}accept" for m in peer_matches]
            continue
        for j, port in enumerate(ports):
            named_set = None
            if port.name:
                # The port is the destination's: the policy's pods for ingress, the peers (any pod when the
                # rule names none) for egress.
                targets = peer_pods if peers else cluster.pods
                if d is INGRESS:
                    if own_pods is None:
                        own_pods = [p for p in cluster.by_namespace.get(ns, []) if np.selects(policy, p)]
                    targets = own_pods
                named_set = name(f"ports-{d.short}", f"{key}/{i}/{j}")
                entries = set()
                for pod in targets:
                    number = np.named_port(pod, port.name, port.protocol)
                    if number is not None:
                        entries |= {f"{ip} . {port.protocol.lower()} . {number}" for ip in cluster.ips(pod)}
                out.sets[named_set] = (NAMED_PORTS_DECL, frozenset(entries))
            rules += [f"{m}{_port_match(port, named_set)} accept" for m in peer_matches]
    out.chains[chain] = rules
    return chain


def build(table: str, cluster: Cluster) -> Ruleset:
    out = Ruleset(table)
    out.chains["ingress"] = [_HOOK, "ct state established,related accept", f"ip daddr vmap @{INGRESS_MAP}"]
    out.chains["egress"] = [_HOOK, "ct state established,related accept", f"ip saddr vmap @{EGRESS_MAP}"]
    by_namespace: dict[str, list[Obj]] = {}
    for policy in sorted(cluster.policies, key=_key):
        by_namespace.setdefault((policy.get("metadata") or {}).get("namespace", ""), []).append(policy)
    for pod in sorted(cluster.local_pods(), key=_key):
        ns = (pod.get("metadata") or {}).get("namespace", "")
        ips = cluster.ips(pod)
        for d in (INGRESS, EGRESS):
            chosen = [p for p in by_namespace.get(ns, []) if d.kind in np.policy_types(p) and np.selects(p, pod)]
            if not chosen:
                continue
            chain = name(f"pod-{d.short}", _key(pod))
            rules = [f"ip {d.remote} {ip} accept" for ip in ips]
            for policy in chosen:
                policy_chain = name(f"pol-{d.short}", _key(policy))
                if policy_chain not in out.chains:
                    _policy_chain(policy, d, cluster, out)
                rules.append(f"jump {policy_chain}")
            out.chains[chain] = rules + ["drop"]
            for ip in ips:
                out.maps[d.map][ip] = f"jump {chain}"
    return out


def _elements(items: Iterable[str]) -> str:
    return "{ " + ", ".join(sorted(items)) + " }"


def _add_chain(t: str, chain: str, rules: list[str]) -> tuple[list[str], list[str]]:
    """(declaration, rule commands) of a chain."""
    if rules and rules[0].startswith("type "):
        return [f"add chain ip {t} {chain} {{ {rules[0]} }}"], [f"add rule ip {t} {chain} {r}" for r in rules[1:]]
    return [f"add chain ip {t} {chain}"], [f"add rule ip {t} {chain} {r}" for r in rules]


def full(new: Ruleset, existing_chains: set[str], existing_sets: set[str]) -> str:
    """The script that makes the table exactly `new` whatever it holds now (`existing_*`: what the kernel
    lists), in one transaction: flush everything, declare and fill everything, delete what is stale."""
    t = new.table
    # `flush table` empties chains, not sets and maps: their elements (jumps to chains, too) are flushed here.
    parts = [f"add table ip {t}", f"flush table ip {t}"]
    for m in MAPS:
        parts += [f"add map ip {t} {m} {{ {_MAP_DECL} }}", f"flush map ip {t} {m}"]
    parts += [f"flush set ip {t} {s}" for s in sorted(existing_sets - set(MAPS))]
    for s, (decl, items) in new.sets.items():
        parts.append(f"add set ip {t} {s} {{ {decl} }}")
        if items:
            parts.append(f"add element ip {t} {s} {_elements(items)}")
    declarations, rules = [], []
    for chain, chain_rules in new.chains.items():
        d, r = _add_chain(t, chain, chain_rules)
        declarations += d
        rules += r
    parts += declarations + rules
    for m in MAPS:
        if new.maps[m]:
            parts.append(f"add element ip {t} {m} {_elements(f'{k} : {v}' for k, v in new.maps[m].items())}")
    parts += [f"delete chain ip {t} {c}" for c in sorted(existing_chains - set(new.chains))]
    parts += [f"delete set ip {t} {s}" for s in sorted(existing_sets - set(new.sets) - set(MAPS))]
    return "\n".join(parts) + "\n"


def incremental(old: Ruleset, new: Ruleset) -> str | None:
    """The script that turns the table from `old` into `new` touching only what differs (a pod's new address
    is a few set and map elements); None when nothing does."""
    t = new.table
    parts: list[str] = []
    for s, (decl, items) in new.sets.items():
        before = old.sets.get(s)
        if before is None or before[0] != decl:
            if before is not None:
                continue  # a changed declaration cannot happen (names carry the kind); a full sync would fix it
            parts.append(f"add set ip {t} {s} {{ {decl} }}")
            if items:
                parts.append(f"add element ip {t} {s} {_elements(items)}")
            continue
        gone, added = before[1] - items, items - before[1]
        if gone:
            parts.append(f"delete element ip {t} {s} {_elements(gone)}")
        if added:
            parts.append(f"add element ip {t} {s} {_elements(added)}")
    changed = [c for c, rules in new.chains.items() if old.chains.get(c) != rules]
    declarations, rules = [], []
    for chain in changed:
        if chain in old.chains:
            parts.append(f"flush chain ip {t} {chain}")
            rules += _add_chain(t, chain, new.chains[chain])[1]
        else:
            d, r = _add_chain(t, chain, new.chains[chain])
            declarations += d
            rules += r
    parts += declarations + rules
    for m in MAPS:
        had, has = old.maps[m], new.maps[m]
        dropped = [k for k, v in had.items() if has.get(k) != v]
        entries = {k: v for k, v in has.items() if had.get(k) != v}
        if dropped:
            parts.append(f"delete element ip {t} {m} {_elements(dropped)}")
        if entries:
            parts.append(f"add element ip {t} {m} {_elements(f'{k} : {v}' for k, v in entries.items())}")
    gone_chains = sorted(set(old.chains) - set(new.chains))
    parts += [f"flush chain ip {t} {c}" for c in gone_chains]
    parts += [f"delete chain ip {t} {c}" for c in gone_chains]
    parts += [f"delete set ip {t} {s}" for s in sorted(set(old.sets) - set(new.sets))]
    return "\n".join(parts) + "\n" if parts else None
