"""From Services and EndpointSlices to the nftables ruleset of one table: pure functions.

The shape follows kube-proxy's nftables mode, reduced to what pkube needs:

* Named verdict maps route new connections: `service-ips` from (destination IP, protocol, port) and
  `service-nodeports` from (protocol, node port), for packets addressed to any local address
  (`fib daddr type local`, so 127.0.0.1 and every node address), to a per-Service-port chain. The rules
  that consult them never change; a Service coming or going is one map element added or deleted, which
  keeps a partial sync small however many Services there are.
* `svc-<ns>/<name>/<proto>/<port>` DNATs to an endpoint picked with equal weight (a cascade of
  `numgen random mod N-i 0` rules, as kube-proxy's iptables mode uses `statistic`); with ClientIP session
  affinity it first looks for the client's sticky endpoint, and per-endpoint `ep-...` chains DNAT and
  remember the client. No anonymous set or map anywhere per Service: nft loads those in quadratic time.
* `ext-...` chains handle traffic from outside the Service's ClusterIP (node ports, externalIPs, load
  balancer IPs): `externalTrafficPolicy: Cluster` masquerades and uses every endpoint; `Local` keeps the
  client address and uses only this node's endpoints (dropping when there are none), except for traffic
  that starts on this node, which is treated like Cluster (as kube-proxy does).
* Masquerading is decided by a packet mark set only where it is needed -- connections that start on
  the host (their source may be 127.0.0.1, which needs `route_localnet`, or an uplink address the pod has
  no route back to on other nodes) and external traffic with policy Cluster -- and acted upon in
  postrouting, which also masquerades hairpin traffic (an endpoint reaching itself through its Service:
  source == destination after DNAT, matched against the `hairpin` set of endpoint address pairs, for DNAT'ed
  connections only).
* Packets from any interface but `lo` to 127.0.0.0/8 that were not DNAT'ed are dropped in filter input, as
  kube-proxy does for CVE-2020-8558: `route_localnet`, needed for node ports on 127.0.0.1, must not open
  the host's loopback-only services to pods and the LAN.
* Services with no endpoints are rejected from filter hooks (TCP reset / ICMP port unreachable) through
  the `no-endpoint-*` maps, so clients fail at once; `service-*` have no entry for them.
* Session affinity: one dynamic set with timeout per endpoint (`update @aff-... { ip saddr }`), checked
  before the random choice. Sets survive rule rewrites because the proxy flushes rules, not those sets.

Each Service yields a `Fragment` (its chains, sets and map elements) that depends on that Service and
its slices only, so the proxier rebuilds just the Services that changed. Headless Services
(`clusterIP: None`) and ExternalName Services get no rules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .slices import Endpoint, endpoints_for, group_by_service, ip_key, is_ipv4, local_endpoints

Obj = dict[str, Any]

MASQUERADE_MARK = 0x4000
LOOPBACK_NET = "127.0.0.0/8"
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds; Kubernetes' default for sessionAffinityConfig.clientIP
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # DNS labels/subdomains, IANA port names

HAIRPIN_SET = "hairpin"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_IPS = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
HOSTPORT_IPS = "hostport-ips"  # pods' hostPorts with a hostIP: (address, protocol, port) -> the pod's chain
HOSTPORTS = "hostport-any"  # pods' hostPorts on every local address (hostIP 0.0.0.0): (protocol, port) -> chain
REJECT_CHAIN = "reject-no-endpoints"
ELEMENT_MAPS = (SERVICE_IPS, SERVICE_NODEPORTS, NO_ENDPOINT_IPS, NO_ENDPOINT_NODEPORTS, HOSTPORT_IPS, HOSTPORTS)
_IP_MAP = "type ipv4_addr . inet_proto . inet_service : verdict;"
_NODEPORT_MAP = "type inet_proto . inet_service : verdict;"


class RulesError(ValueError):
    pass


@dataclass
class ServicePort:
    """One port of one Service with the endpoints that serve it: the unit rules are made of."""
    namespace: str
    name: str
    port_name: str
    protocol: str  # nft spelling: tcp/udp/sctp
    port: int
    cluster_ip: str
    node_port: int = 0
    external_ips: list[str] = field(default_factory=list)  # spec.externalIPs + status.loadBalancer IPs
    local_policy: bool = False
    affinity_timeout: int = 0  # 0: no ClientIP affinity
    endpoints: list[Endpoint] = field(default_factory=list)
    local_endpoints: list[Endpoint] = field(default_factory=list)  # this node's, for policy Local

    @property
    def id(self) -> str:
        # Port names are optional for single-port Services; the number then identifies the port.
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name or self.port}"


@dataclass
class Fragment:
    """What one Service (or one pod's hostPorts, proxy/hostports.py) contributes to the table."""
    ports: list[ServicePort]
    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)  # map -> key -> verdict
    hairpin: frozenset[str] = frozenset()
    key: str = ""  # orders fragments without Service ports in the table
    udp_flows: frozenset[tuple[str, int, str]] = frozenset()  # as udp_targets gives, for hostPorts

    @property
    def sort_key(self) -> str:
        return self.ports[0].id if self.ports else self.key


@dataclass
class Ruleset:
    table: str
    chains: dict[str, list[str]]  # name -> rules (a base chain starts with its `type ... hook ...;` line)
    sets: dict[str, str]  # name -> declaration (`type ...; flags ...;`)
    elements: dict[str, dict[str, str]]  # map name -> key -> verdict (every map of ELEMENT_MAPS)
    hairpin: set[str]  # endpoint IPs: elements `ip . ip` of the hairpin set
    ports: list[ServicePort]
    udp_flows: set[tuple[str, int, str]] = field(default_factory=set)  # the fragments' own (hostPorts)

    def render(self, with_elements: bool = False) -> str:
        """`table ip T { ... }` with every set, map and chain; map elements only when asked."""
        lines = [f"table ip {self.table} {{"]
        for name, decl in self.sets.items():
            lines += [f"  set {name} {{", f"    {decl}", "  }"]
        for name in ELEMENT_MAPS:
            lines += [f"  map {name} {{", f"    {map_declaration(name)}"]
            if with_elements and self.elements[name]:
                lines.append(f"    elements = {map_elements(self.elements[name])}")
            lines.append("  }")
        for name, rules in self.chains.items():
            lines.append(f"  chain {name} {{")
            lines += [f"    {r}" for r in rules]
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    @property
    def text(self) -> str:
        return self.render(with_elements=True)


def map_declaration(name: str) -> str:
    return _IP_MAP if name in (SERVICE_IPS, NO_ENDPOINT_IPS, HOSTPORT_IPS) else _NODEPORT_MAP


def map_elements(entries: Mapping[str, str]) -> str:
    """`{ k : v, ... }` in a stable order (nft itself lists elements sorted, whatever the insertion order)."""
    return "{ " + ", ".join(f"{k} : {entries[k]}" for k in sorted(entries)) + " }"


def hairpin_elements(ips: Iterable[str]) -> str:
    return "{ " + ", ".join(f"{ip} . {ip}" for ip in sorted(ips, key=ip_key)) + " }"


def valid_table_name(table: str) -> str:
    if not _TABLE_NAME.match(table):
        raise RulesError(f"invalid nftables table name {table!r}: use letters, digits, '-' and '_' (max 64)")
    return table


def service_key(svc: Obj) -> str:
    meta = svc.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def service_ports(svc: Obj, slices: Iterable[Obj], node_name: str = "") -> list[ServicePort]:
    """The programmable ports of one Service with their endpoints from the Service's EndpointSlices."""
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    cluster_ip = str(spec.get("clusterIP") or "")
    svc_type = spec.get("type", "ClusterIP")
    if svc_type == "ExternalName" or not is_ipv4(cluster_ip):
        return []  # headless (None), ExternalName, or not allocated yet: DNS only
    if not (_NAME.match(ns) and _NAME.match(name)):
        return []  # the API server validates names; never let a stray one into nft syntax
    slices = list(slices)
    external = [ip for ip in spec.get("externalIPs") or [] if is_ipv4(ip)]
    if svc_type == "LoadBalancer":
        external += [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                     if is_ipv4(i.get("ip"))]
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    local_policy = spec.get("externalTrafficPolicy") == "Local" and svc_type != "ClusterIP"
    out = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol", "TCP")
        port_name = p.get("name") or ""
        if proto not in _PROTOCOLS or not isinstance(p.get("port"), int) or not 0 < p["port"] < 65536 \
                or (port_name and not _NAME.match(port_name)):
            continue
        out.append(ServicePort(
            namespace=ns, name=name, port_name=port_name, protocol=_PROTOCOLS[proto], port=int(p["port"]),
            cluster_ip=cluster_ip,
            node_port=int(p.get("nodePort") or 0) if svc_type in ("NodePort", "LoadBalancer") else 0,
            external_ips=sorted(set(external)), local_policy=local_policy, affinity_timeout=affinity,
            endpoints=endpoints_for(slices, port_name, proto),
            local_endpoints=local_endpoints(slices, port_name, proto, node_name) if local_policy else []))
    out.sort(key=lambda sp: sp.id)
    return out


def _ep_name(prefix: str, sp: ServicePort, ep: Endpoint) -> str:
    return f"{prefix}-{sp.id}__{ep.ip}/{ep.port}"


def _affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    # The timeout is part of the name: a set's timeout cannot be changed in place, a new set can be added.
    return _ep_name(f"aff{sp.affinity_timeout}", sp, ep)


def _pick(sp: ServicePort, endpoints: list[Endpoint]) -> list[str]:
    """Rules that DNAT a packet to one of `endpoints`, chosen at random with equal weight.

    A cascade, as kube-proxy's iptables mode does it: rule i of n takes the packet with probability 1/(n - i)
    (a fresh `numgen` each), the last one takes what is left, so each endpoint gets 1/n. No anonymous map: `nft`
    (1.0.6 here) looks each new anonymous set up among all the others, which makes a table of thousands of
    Services quadratic to load (5,000 Services took 2.7 s to parse, bench.growth); plain rules stay linear.
    With ClientIP affinity each endpoint has a chain of its own that records the client in the endpoint's set.
    """
    n = len(endpoints)
    if not sp.affinity_timeout:
        picks = [f"dnat ip to {ep.ip}:{ep.port}" for ep in endpoints]
    else:
        picks = [f"goto {_ep_name('ep', sp, ep)}" for ep in endpoints]
    rules = [f"ip saddr @{_affinity_set(sp, ep)} goto {_ep_name('ep', sp, ep)}"
             for ep in endpoints] if sp.affinity_timeout else []
    proto = f"meta l4proto {sp.protocol} " if not sp.affinity_timeout else ""
    rules += [f"{proto}numgen random mod {n - i} 0 {pick}" for i, pick in enumerate(picks[:-1])]
    rules.append(f"{proto}{picks[-1]}")
    return rules


def fragment(ports: list[ServicePort]) -> Fragment:
    """The chains, sets and map elements of one Service's ports. Deterministic."""
    frag = Fragment(ports, elements={m: {} for m in ELEMENT_MAPS})
    chains, ips, node_ports = frag.chains, frag.elements[SERVICE_IPS], frag.elements[SERVICE_NODEPORTS]
    hairpin: set[str] = set()
    for sp in ports:
        svc_chain, ext_chain = f"svc-{sp.id}", f"ext-{sp.id}"
        addresses = [sp.cluster_ip, *sp.external_ips]
        if not sp.endpoints:
            for ip in addresses:
                frag.elements[NO_ENDPOINT_IPS][f"{ip} . {sp.protocol} . {sp.port}"] = f"goto {REJECT_CHAIN}"
            if sp.node_port:
                frag.elements[NO_ENDPOINT_NODEPORTS][f"{sp.protocol} . {sp.node_port}"] = f"goto {REJECT_CHAIN}"
            continue
        ips[f"{sp.cluster_ip} . {sp.protocol} . {sp.port}"] = f"goto {svc_chain}"
        # Connections from the host itself come from 127.0.0.1 or an uplink address: masquerade them so
        # the reply comes back through this node.
        chains[svc_chain] = ["fib saddr type local jump mark-for-masquerade", *_pick(sp, sp.endpoints)]
        if sp.node_port or sp.external_ips:
            for ip in sp.external_ips:
                ips[f"{ip} . {sp.protocol} . {sp.port}"] = f"goto {ext_chain}"
            if sp.node_port:
                node_ports[f"{sp.protocol} . {sp.node_port}"] = f"goto {ext_chain}"
            if not sp.local_policy:
                chains[ext_chain] = ["jump mark-for-masquerade", f"goto {svc_chain}"]
            else:
                # Local: keep the client's address, use only endpoints on this node, drop if there are none.
                chains[ext_chain] = [f"fib saddr type local goto {svc_chain}"]
                if sp.local_endpoints:
                    chains[f"local-{sp.id}"] = _pick(sp, sp.local_endpoints)
                    chains[ext_chain].append(f"goto local-{sp.id}")
                else:
                    chains[ext_chain].append("drop")
        # Policy Local may fall back to this node's terminating endpoints while others are ready elsewhere.
        serving = sorted(set(sp.endpoints) | set(sp.local_endpoints))
        hairpin.update(ep.ip for ep in serving)
        for ep in serving if sp.affinity_timeout else ():
            aff = _affinity_set(sp, ep)
            frag.sets[aff] = f"type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_timeout}s;"
            chains[_ep_name("ep", sp, ep)] = [f"update @{aff} {{ ip saddr }}",
                                              f"meta l4proto {sp.protocol} dnat to {ep.ip}:{ep.port}"]
    frag.hairpin = frozenset(hairpin)
    return frag


def base_chains() -> dict[str, list[str]]:
    """The chains every table has: hooks, masquerading, and the lookups in the Service maps."""
    mark = f"0x{MASQUERADE_MARK:x}"
    chains = {
        "nat-prerouting": ["type nat hook prerouting priority dstnat; policy accept;", "jump services",
                           "jump hostports"],
        "nat-output": ["type nat hook output priority -100; policy accept;", "jump services", "jump hostports"],
        "nat-postrouting": ["type nat hook postrouting priority srcnat; policy accept;", "jump masquerading"],
        # Clear the mark before masquerading so that the packet looks untouched to anything after us.
        # Hairpin: only connections a Service or hostPort DNAT'ed. Without `ct status dnat`, an endpoint on a host
        # address (the API balancer on the cluster network's gateway) masqueraded every connection between
        # that address and itself, e.g. etcd's peers on the gateway, which then could not reconnect.
        "masquerading": [f"ct status dnat ip saddr . ip daddr @{HAIRPIN_SET} jump mark-for-masquerade",
                         f"meta mark & {mark} == 0 return", f"meta mark set meta mark ^ {mark}",
                         "masquerade fully-random"],
        "mark-for-masquerade": [f"meta mark set meta mark | {mark}"],
    }
    for hook in ("input", "forward", "output"):
        chains[f"filter-{hook}"] = [f"type filter hook {hook} priority filter; policy accept;",
                                    "ct state new jump endpoints-check"]
    # route_localnet (localnet.py) would let a pod or a LAN host reach services listening on 127.0.0.1 only
    # (CVE-2020-8558): drop what comes to 127.0.0.0/8 from outside `lo` unless we DNAT'ed it (a node port on
    # 127.0.0.1, replies included). `& dnat == 0`: nft reads `ct status != dnat` as "status is not exactly dnat".
    chains["filter-input"].insert(1, f"iifname != \"lo\" ip daddr {LOOPBACK_NET} ct status & dnat == 0 drop")
    chains[REJECT_CHAIN] = ["meta l4proto tcp reject with tcp reset", "reject"]
    # Node ports last, so that a ClusterIP or external IP port never loses to a node port of the same number.
    chains["services"] = [f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
                          f"fib daddr type local meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"]
    # Pods' hostPorts (hostports.py) after the Services, so that no hostPort on 0.0.0.0 can take the cluster
    # DNS address (a local address here) or a node port away from a Service.
    chains["hostports"] = [f"fib daddr type local ip daddr . meta l4proto . th dport vmap @{HOSTPORT_IPS}",
                           f"fib daddr type local meta l4proto . th dport vmap @{HOSTPORTS}"]
    chains["endpoints-check"] = [f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_IPS}",
                                 f"fib daddr type local meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"]
    return chains


# Hairpin (an endpoint reaching itself through its Service) shows after DNAT as source == destination.
BASE_SETS = {HAIRPIN_SET: "type ipv4_addr . ipv4_addr;"}


def assemble(table: str, fragments: Iterable[Fragment]) -> Ruleset:
    """The whole table from the Services' fragments. The same fragments in any order give the same table."""
    valid_table_name(table)
    frags = sorted(fragments, key=lambda f: f.sort_key)
    chains, sets = base_chains(), dict(BASE_SETS)
    elements: dict[str, dict[str, str]] = {m: {} for m in ELEMENT_MAPS}
    hairpin: set[str] = set()
    ports: list[ServicePort] = []
    udp_flows: set[tuple[str, int, str]] = set()
    for f in frags:
        udp_flows |= f.udp_flows
        chains.update(f.chains)
        sets.update(f.sets)
        for m, entries in f.elements.items():
            elements[m].update(entries)
        hairpin |= f.hairpin
        ports += f.ports
    return Ruleset(table, chains, sets, elements, hairpin, ports, udp_flows)


def build(table: str, services: Iterable[Obj], slices: Iterable[Obj], node_name: str = "") -> Ruleset:
    """The whole table for these Services and EndpointSlices (any order). Deterministic."""
    valid_table_name(table)
    by_service = group_by_service(slices)
    return assemble(table, (fragment(service_ports(svc, by_service.get(service_key(svc), ()), node_name))
                            for svc in services))


def udp_targets(ports: Iterable[ServicePort]) -> set[tuple[str, int, str]]:
    """(service address or "nodeport", service port, endpoint IP) for UDP: what conntrack may remember."""
    out: set[tuple[str, int, str]] = set()
    for sp in ports:
        if sp.protocol != "udp":
            continue
        for ep in sp.endpoints:
            for ip in (sp.cluster_ip, *sp.external_ips):
                out.add((ip, sp.port, ep.ip))
            if sp.node_port:
                out.add(("nodeport", sp.node_port, ep.ip))
    return out
