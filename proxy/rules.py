"""From Services and Endpoints to the complete nftables ruleset of one table: a pure function.

The shape follows kube-proxy's nftables mode, reduced to what pkube needs:

* `services` (jumped to from the nat prerouting and output hooks) holds one verdict map from
  (destination IP, protocol, port) to a per-Service-port chain, and one from (protocol, node port) for
  packets addressed to any local address (`fib daddr type local`, so 127.0.0.1 and every node address).
* `svc-<ns>/<name>/<proto>/<port>` DNATs to an endpoint picked with equal weight (`numgen random mod N`
  indexing a map of address . port); with ClientIP session affinity it first looks for the client's
  sticky endpoint, and per-endpoint `ep-...` chains DNAT and remember the client.
* `ext-...` chains handle traffic from outside the Service's ClusterIP (node ports, externalIPs, load
  balancer IPs): `externalTrafficPolicy: Cluster` masquerades and uses every endpoint; `Local` keeps the
  client address and uses only this node's endpoints (dropping when there are none), except for traffic
  that starts on this node, which is treated like Cluster (as kube-proxy does).
* Masquerading is decided by a packet mark set only where it is needed -- connections that start on
  the host (their source may be 127.0.0.1, which needs `route_localnet`, or an uplink address the pod has
  no route back to on other nodes) and external traffic with policy Cluster -- and acted upon in
  postrouting, which also masquerades hairpin traffic (an endpoint reaching itself through its Service:
  source == destination after DNAT, matched against the `hairpin` set of endpoint address pairs).
* Services with no ready endpoints are rejected from filter hooks (TCP reset / ICMP port unreachable) so
  clients fail at once; `services` has no entry for them, so nothing is DNATed.
* Session affinity: one dynamic set with timeout per endpoint (`update @aff-... { ip saddr }`), checked
  before the random choice. Sets survive rule rewrites because the proxy flushes rules, not sets.

Headless Services (`clusterIP: None`) and ExternalName Services get no rules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple

Obj = dict[str, Any]

MASQUERADE_MARK = 0x4000
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds; Kubernetes' default for sessionAffinityConfig.clientIP
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # DNS labels/subdomains, IANA port names


class RulesError(ValueError):
    pass


class Endpoint(NamedTuple):  # a tuple: built for every endpoint on every sync, so cheap to make and sort
    ip: str
    port: int
    node_name: str = ""


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

    @property
    def id(self) -> str:
        # Port names are optional for single-port Services; the number then identifies the port.
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name or self.port}"


HAIRPIN_SET = "hairpin"


@dataclass
class Ruleset:
    table: str
    chains: dict[str, list[str]]  # name -> rules (a base chain starts with its `type ... hook ...;` line)
    sets: dict[str, str]  # name -> declaration (`type ...; flags ...;`)
    hairpin: set[str]  # endpoint IPs: elements `ip . ip` of the hairpin set
    ports: list[ServicePort]

    def render(self, chains: Iterable[str] | None = None, sets: Iterable[str] | None = None) -> str:
        """`table ip T { ... }` with the given chains and sets (default: all of them); no set elements."""
        lines = [f"table ip {self.table} {{"]
        for name in self.sets if sets is None else sets:
            lines += [f"  set {name} {{", f"    {self.sets[name]}", "  }"]
        for name in self.chains if chains is None else chains:
            lines.append(f"  chain {name} {{")
            lines += [f"    {r}" for r in self.chains[name]]
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def commands(self, chains: Iterable[str], sets: Iterable[str], new_chains: set[str]) -> list[str]:
        """Flat `add set/chain/rule` commands for the given objects (for incremental transactions).

        The flat form costs nft about half the time of the block form on a big table (less cache work).
        Chains not in `new_chains` exist already and are expected to have been flushed.
        """
        t = self.table
        out = [f"add set ip {t} {name} {{ {self.sets[name]} }}" for name in sets]
        for name in chains:
            rules = self.chains[name]
            if rules and rules[0].startswith("type "):  # a base chain: its hook line is part of the chain
                out.append(f"add chain ip {t} {name} {{ {rules[0]} }}")
                rules = rules[1:]
            elif name in new_chains:
                out.append(f"add chain ip {t} {name}")
            out += [f"add rule ip {t} {name} {r}" for r in rules]
        return out

    @property
    def text(self) -> str:
        return self.render()


def hairpin_elements(ips: Iterable[str]) -> str:
    return "{ " + ", ".join(f"{ip} . {ip}" for ip in sorted(ips, key=ip_key)) + " }"


def valid_table_name(table: str) -> str:
    if not _TABLE_NAME.match(table):
        raise RulesError(f"invalid nftables table name {table!r}: use letters, digits, '-' and '_' (max 64)")
    return table


def _endpoints_for(ep_obj: Obj | None, port_name: str, protocol: str) -> list[Endpoint]:
    """Ready addresses of the subsets that carry this Service port (matched by name, like kube-proxy).

    Each subset lists the resolved target port, so a named targetPort may map to different numbers per pod.
    """
    found: set[Endpoint] = set()
    for subset in (ep_obj or {}).get("subsets") or []:
        for p in subset.get("ports") or []:
            if (p.get("name") or "") != port_name or p.get("protocol", "TCP") != protocol:
                continue
            port = p.get("port")
            if not isinstance(port, int) or not 0 < port < 65536:
                continue
            for addr in subset.get("addresses") or []:
                # One malformed address must not break the transaction for every Service: skip it.
                if is_ipv4(addr.get("ip")):
                    found.add(Endpoint(addr["ip"], port, addr.get("nodeName") or ""))
    return sorted(found)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def ip_key(ip: str) -> tuple[int, ...]:
    """Numeric sort key of a dotted IPv4 address."""
    return tuple(map(int, ip.split(".")))


def is_ipv4(ip: Any) -> bool:
    # A regex, not ipaddress: this runs for every endpoint on every sync, and ipaddress is ~20x slower.
    return isinstance(ip, str) and _IPV4.fullmatch(ip) is not None


# Parsed ports per Service, reused while neither the Service nor its Endpoints changed:
# "ns/name" -> ((service resourceVersion, endpoints resourceVersion), ports).
PortCache = dict[str, tuple[tuple[str, str], list["ServicePort"]]]


def service_ports(services: Iterable[Obj], endpoints: Mapping[str, Obj],
                  cache: PortCache | None = None) -> list[ServicePort]:
    """The programmable ports of every Service, sorted; `endpoints` maps "ns/name" to the Endpoints object.

    With a `cache`, Services whose objects carry the same resourceVersions as last time are not parsed
    again (one Endpoints change then costs one Service's work); entries of vanished Services are dropped.
    """
    out: list[ServicePort] = []
    seen: set[str] = set()
    for svc in services:
        meta = svc.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        ep_obj = endpoints.get(key)
        versions = (str(meta.get("resourceVersion") or ""),
                    str(((ep_obj or {}).get("metadata") or {}).get("resourceVersion") or ""))
        hit = cache.get(key) if cache is not None and versions[0] else None
        if hit is not None and hit[0] == versions:
            ports = hit[1]
        else:
            ports = _ports_of(svc, ep_obj)
            if cache is not None and versions[0]:
                cache[key] = (versions, ports)
        seen.add(key)
        out += ports
    if cache is not None:
        for key in set(cache) - seen:
            del cache[key]
    out.sort(key=lambda sp: sp.id)
    return out


def _ports_of(svc: Obj, ep_obj: Obj | None) -> list[ServicePort]:
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    cluster_ip = str(spec.get("clusterIP") or "")
    svc_type = spec.get("type", "ClusterIP")
    if svc_type == "ExternalName" or not is_ipv4(cluster_ip):
        return []  # headless (None), ExternalName, or not allocated yet: DNS only
    if not (_NAME.match(ns) and _NAME.match(name)):
        return []  # the API server validates names; never let a stray one into nft syntax
    external = [ip for ip in spec.get("externalIPs") or [] if is_ipv4(ip)]
    if svc_type == "LoadBalancer":
        external += [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                     if is_ipv4(i.get("ip"))]
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
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
            external_ips=sorted(set(external)),
            local_policy=spec.get("externalTrafficPolicy") == "Local" and svc_type != "ClusterIP",
            affinity_timeout=affinity,
            endpoints=_endpoints_for(ep_obj, port_name, proto)))
    return out


def _ep_name(prefix: str, sp: ServicePort, ep: Endpoint) -> str:
    return f"{prefix}-{sp.id}__{ep.ip}/{ep.port}"


def _affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    # The timeout is part of the name: a set's timeout cannot be changed in place, a new set can be added.
    return _ep_name(f"aff{sp.affinity_timeout}", sp, ep)


def _vmap(entries: list[tuple[str, str]]) -> str:
    return "{ " + ", ".join(f"{k} : {v}" for k, v in entries) + " }"


def _pick(sp: ServicePort, endpoints: list[Endpoint]) -> list[str]:
    """Rules that DNAT a packet to one of `endpoints`, chosen at random with equal weight.

    Without affinity one rule does it (`numgen` indexing a map of address . port), so a Service costs one
    chain, not one per endpoint: the table stays small and `nft -f` fast. With ClientIP affinity each
    endpoint needs a chain of its own that records the client in the endpoint's set.
    """
    if not sp.affinity_timeout:
        targets = ", ".join(f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(endpoints))
        return [f"meta l4proto {sp.protocol} dnat ip to numgen random mod {len(endpoints)} map {{ {targets} }}"]
    rules = [f"ip saddr @{_affinity_set(sp, ep)} goto {_ep_name('ep', sp, ep)}" for ep in endpoints]
    choices = [(str(i), f"goto {_ep_name('ep', sp, ep)}") for i, ep in enumerate(endpoints)]
    rules.append(f"numgen random mod {len(endpoints)} vmap {_vmap(choices)}")
    return rules


def build(table: str, services: Iterable[Obj], endpoints: Mapping[str, Obj], node_name: str = "",
          cache: PortCache | None = None) -> Ruleset:
    """The whole table for these objects. Deterministic: the same input gives byte-identical text."""
    valid_table_name(table)
    ports = service_ports(services, endpoints, cache)
    chains: dict[str, list[str]] = {}
    # Hairpin (an endpoint reaching itself through its Service) shows after DNAT as source == destination.
    sets: dict[str, str] = {HAIRPIN_SET: "type ipv4_addr . ipv4_addr;"}
    hairpin: set[str] = set()
    mark = f"0x{MASQUERADE_MARK:x}"
    chains["nat-prerouting"] = ["type nat hook prerouting priority dstnat; policy accept;", "jump services"]
    chains["nat-output"] = ["type nat hook output priority -100; policy accept;", "jump services"]
    chains["nat-postrouting"] = ["type nat hook postrouting priority srcnat; policy accept;", "jump masquerading"]
    # Clear the mark before masquerading so that the packet looks untouched to anything after us.
    chains["masquerading"] = [f"ip saddr . ip daddr @{HAIRPIN_SET} jump mark-for-masquerade",
                              f"meta mark & {mark} == 0 return", f"meta mark set meta mark ^ {mark}",
                              "masquerade fully-random"]
    chains["mark-for-masquerade"] = [f"meta mark set meta mark | {mark}"]
    for hook in ("input", "forward", "output"):
        chains[f"filter-{hook}"] = [f"type filter hook {hook} priority filter; policy accept;",
                                    "ct state new jump endpoints-check"]
    chains["reject-no-endpoints"] = ["meta l4proto tcp reject with tcp reset", "reject"]

    by_address: list[tuple[str, str]] = []
    by_node_port: list[tuple[str, str]] = []
    refuse_address: list[tuple[str, str]] = []
    refuse_node_port: list[tuple[str, str]] = []
    for sp in ports:
        svc_chain, ext_chain = f"svc-{sp.id}", f"ext-{sp.id}"
        local = [ep for ep in sp.endpoints if node_name and ep.node_name == node_name]
        has_external = bool(sp.node_port or sp.external_ips)
        if not sp.endpoints:
            refuse_address.append((f"{sp.cluster_ip} . {sp.protocol} . {sp.port}", "goto reject-no-endpoints"))
            refuse_address += [(f"{ip} . {sp.protocol} . {sp.port}", "goto reject-no-endpoints")
                               for ip in sp.external_ips]
            if sp.node_port:
                refuse_node_port.append((f"{sp.protocol} . {sp.node_port}", "goto reject-no-endpoints"))
            continue
        by_address.append((f"{sp.cluster_ip} . {sp.protocol} . {sp.port}", f"goto {svc_chain}"))
        # Connections from the host itself come from 127.0.0.1 or an uplink address: masquerade them so
        # the reply comes back through this node.
        chains[svc_chain] = ["fib saddr type local jump mark-for-masquerade", *_pick(sp, sp.endpoints)]
        if has_external:
            by_address += [(f"{ip} . {sp.protocol} . {sp.port}", f"goto {ext_chain}") for ip in sp.external_ips]
            if sp.node_port:
                by_node_port.append((f"{sp.protocol} . {sp.node_port}", f"goto {ext_chain}"))
            if not sp.local_policy:
                chains[ext_chain] = ["jump mark-for-masquerade", f"goto {svc_chain}"]
            else:
                # Local: keep the client's address, use only endpoints on this node, drop if there are none.
                chains[ext_chain] = [f"fib saddr type local goto {svc_chain}"]
                if local:
                    chains[f"local-{sp.id}"] = _pick(sp, local)
                    chains[ext_chain].append(f"goto local-{sp.id}")
                else:
                    chains[ext_chain].append("drop")
        hairpin.update(ep.ip for ep in sp.endpoints)
        for ep in sp.endpoints if sp.affinity_timeout else ():
            aff = _affinity_set(sp, ep)
            sets[aff] = f"type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_timeout}s;"
            chains[_ep_name("ep", sp, ep)] = [f"update @{aff} {{ ip saddr }}",
                                              f"meta l4proto {sp.protocol} dnat to {ep.ip}:{ep.port}"]

    services_rules = []
    if by_address:
        services_rules.append(f"ip daddr . meta l4proto . th dport vmap {_vmap(by_address)}")
    if by_node_port:
        # Last, so that a ClusterIP or external IP port never loses to a node port of the same number.
        services_rules.append(f"fib daddr type local meta l4proto . th dport vmap {_vmap(by_node_port)}")
    chains["services"] = services_rules
    check = []
    if refuse_address:
        check.append(f"ip daddr . meta l4proto . th dport vmap {_vmap(refuse_address)}")
    if refuse_node_port:
        check.append(f"fib daddr type local meta l4proto . th dport vmap {_vmap(refuse_node_port)}")
    chains["endpoints-check"] = check

    return Ruleset(table, chains, sets, hairpin, ports)


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
