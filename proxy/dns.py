"""Cluster DNS records from Services and EndpointSlices, and answering queries from them (no I/O here).

The names follow the Kubernetes DNS specification (what CoreDNS' kubernetes plugin serves):

* `<svc>.<ns>.svc.<domain>` A -> the ClusterIP; for a headless Service the ready endpoint IPs; an
  ExternalName Service is a CNAME to its external name.
* `<hostname>.<svc>.<ns>.svc.<domain>` A -> the endpoint that carries that hostname (StatefulSet pods,
  whose `spec.hostname`/`spec.subdomain` the endpoint slice controller copies into the slices), and
  `<a-b-c-d>.<svc>.<ns>.svc.<domain>` for the other endpoints of a headless Service.
* `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports: the Service name and port, or for a
  headless Service one record per endpoint with the endpoint's name and port.
* `<a-b-c-d>.<ns>.pod.<domain>` A -> a.b.c.d (the "pods insecure" mode CoreDNS runs by default).
* PTR for ClusterIPs and endpoint IPs.
* Anything else under the cluster domain is NXDOMAIN; a known name without records of the asked type is
  NOERROR with no answer. Names outside the domain (and unknown reverse names) are for the upstreams.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from dnslib import CNAME, DNSRecord, PTR, QTYPE, RCODE, RR, SRV, A

from .slices import group_by_service, ip_key, is_ipv4

Obj = dict[str, Any]
DEFAULT_TTL = 5  # seconds, as CoreDNS' kubernetes plugin: endpoints change often


@dataclass
class Zone:
    domain: str  # "cluster.local." (lower case, trailing dot)
    a: dict[str, list[str]] = field(default_factory=dict)
    cname: dict[str, str] = field(default_factory=dict)
    srv: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)  # prio, weight, port, target
    ptr: dict[str, str] = field(default_factory=dict)  # reverse name -> name
    names: set[str] = field(default_factory=set)  # every name that exists (also empty non-terminals)

    def add_name(self, name: str) -> None:
        # Parents down to the domain exist too (NOERROR/NODATA instead of NXDOMAIN), as in any DNS tree.
        while name not in self.names and name.endswith(self.domain):
            self.names.add(name)
            name = name.split(".", 1)[1]


def normalize_domain(domain: str) -> str:
    d = domain.strip().strip(".").lower()
    if not d:
        raise ValueError("the cluster domain must not be empty")
    return d + "."


_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _dashed(ip: str) -> str:
    return ip.replace(".", "-")


def _reverse(ip: str) -> str:
    return ipaddress.IPv4Address(ip).reverse_pointer + "."


def _ready_members(slice_: Obj) -> Iterable[tuple[str, str]]:
    """(IPv4, hostname or "") of the slice's ready endpoints: what a headless Service's names resolve to.

    `ready` absent means ready; the endpoint slice controller marks every endpoint ready for a Service
    with publishNotReadyAddresses, so that case needs nothing here (as in CoreDNS).
    """
    for ep in slice_.get("endpoints") or []:
        if (ep.get("conditions") or {}).get("ready") is False:
            continue
        host = ep.get("hostname") or ""
        if host and not _LABEL.match(host):
            continue  # never let a name that is not a DNS label into the zone
        for ip in ep.get("addresses") or []:
            if is_ipv4(ip):
                yield ip, host


def build_zone(services: Iterable[Obj], slices: Iterable[Obj], domain: str = "cluster.local") -> Zone:
    """The zone for these Services and their EndpointSlices (labelled kubernetes.io/service-name)."""
    zone = Zone(normalize_domain(domain))
    by_service = group_by_service(slices)
    zone.add_name(zone.domain)
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        base = f"{name}.{ns}.svc.{zone.domain}"
        svc_type = spec.get("type", "ClusterIP")
        zone.add_name(base)
        if svc_type == "ExternalName":
            if spec.get("externalName"):
                zone.cname[base] = spec["externalName"].rstrip(".") + "."
            continue
        cluster_ip = str(spec.get("clusterIP") or "")
        headless = cluster_ip == "None"
        if not headless:
            if not is_ipv4(cluster_ip):
                continue
            zone.a[base] = [cluster_ip]
            zone.ptr.setdefault(_reverse(cluster_ip), base)
        seen: set[str] = set()
        # Only a headless Service's names resolve to its endpoints; a ClusterIP Service's to the ClusterIP.
        for slice_ in by_service.get(f"{ns}/{name}", ()) if headless else ():
            if slice_.get("addressType", "IPv4") != "IPv4":
                continue
            members = list(_ready_members(slice_))
            for ip, host in members:
                if ip in seen:
                    continue  # listed by two slices while the controller moves it
                seen.add(ip)
                zone.a.setdefault(base, []).append(ip)
                fqdn = f"{host or _dashed(ip)}.{base}"
                zone.a.setdefault(fqdn, []).append(ip)
                zone.add_name(fqdn)
                zone.ptr.setdefault(_reverse(ip), fqdn)
            for port in slice_.get("ports") or []:
                if not port.get("name") or not isinstance(port.get("port"), int):
                    continue
                srv_name = f"_{port['name']}._{(port.get('protocol') or 'TCP').lower()}.{base}"
                zone.add_name(srv_name)
                for ip, host in members:
                    target = f"{host or _dashed(ip)}.{base}"
                    if (0, 100, port["port"], target) not in zone.srv.get(srv_name, ()):
                        zone.srv.setdefault(srv_name, []).append((0, 100, port["port"], target))
        if not headless:
            for port in spec.get("ports") or []:
                if port.get("name"):
                    srv_name = f"_{port['name']}._{port.get('protocol', 'TCP').lower()}.{base}"
                    zone.add_name(srv_name)
                    zone.srv.setdefault(srv_name, []).append((0, 100, int(port["port"]), base))
    for records in zone.a.values():
        records.sort(key=ip_key)
    for srvs in zone.srv.values():
        srvs.sort()
    return zone


def _pod_address(qname: str, zone: Zone) -> str | None:
    """`1-2-3-4.<ns>.pod.<domain>` -> "1.2.3.4"."""
    suffix = ".pod." + zone.domain
    if not qname.endswith(suffix):
        return None
    labels = qname[: -len(suffix)].split(".")
    if len(labels) != 2:
        return None
    ip = labels[0].replace("-", ".")
    return ip if is_ipv4(ip) else None


def is_cluster_name(qname: str, zone: Zone) -> bool:
    """Whether we are authoritative for the name (else it goes upstream)."""
    return qname == zone.domain or qname.endswith("." + zone.domain) or qname in zone.ptr


def answer(zone: Zone, request: DNSRecord, ttl: int = DEFAULT_TTL) -> DNSRecord:
    """The reply for a query under the cluster domain (or for a known reverse name)."""
    reply = request.reply()  # sets aa and ra, copies id and question
    if not request.questions:
        reply.header.rcode = RCODE.FORMERR
        return reply
    q = request.q
    qname = str(q.qname).lower()
    qtype = QTYPE[q.qtype]
    pod_ip = _pod_address(qname, zone)
    if pod_ip is not None:
        if qtype in ("A", "ANY"):
            reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(pod_ip), ttl=ttl))
        return reply
    if qname in zone.ptr:
        if qtype in ("PTR", "ANY"):
            reply.add_answer(RR(q.qname, QTYPE.PTR, rdata=PTR(zone.ptr[qname]), ttl=ttl))
        return reply
    if qname not in zone.names:
        reply.header.rcode = RCODE.NXDOMAIN
        return reply
    if qname in zone.cname:
        # The client (or its stub resolver) follows the CNAME itself; we are not authoritative for the target.
        reply.add_answer(RR(q.qname, QTYPE.CNAME, rdata=CNAME(zone.cname[qname]), ttl=ttl))
        return reply
    if qtype in ("A", "ANY"):
        for ip in zone.a.get(qname, ()):
            reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=ttl))
    if qtype in ("SRV", "ANY"):
        for prio, weight, port, target in zone.srv.get(qname, ()):
            reply.add_answer(RR(q.qname, QTYPE.SRV, rdata=SRV(prio, weight, port, target), ttl=ttl))
            for ip in zone.a.get(target, ()):
                reply.add_ar(RR(target, QTYPE.A, rdata=A(ip), ttl=ttl))
    # AAAA and other types for an existing name: NOERROR with no answer (NODATA); these are IPv4 clusters.
    return reply


def servfail(request: DNSRecord) -> DNSRecord:
    reply = request.reply()
    reply.header.rcode = RCODE.SERVFAIL
    reply.header.aa = 0
    return reply


def truncate_for_udp(reply: DNSRecord, data: bytes, limit: int) -> bytes:
    """A UDP reply longer than the client accepts becomes an empty one with TC set, so it retries over TCP."""
    if len(data) <= limit:
        return data
    short = DNSRecord(header=reply.header, questions=reply.questions)
    short.header.tc = 1
    return short.pack()
