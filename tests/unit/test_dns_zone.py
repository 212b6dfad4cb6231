"""Cluster DNS records and answers (pure: no sockets, no API server)."""
from __future__ import annotations

from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord

from proxy import dns

SERVICES: list[dict[str, Any]] = [
    {"metadata": {"namespace": "prod", "name": "web"},
     "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                                   {"port": 81, "protocol": "TCP"}]}},
    {"metadata": {"namespace": "prod", "name": "db"},
     "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}},
    {"metadata": {"namespace": "prod", "name": "ext"},
     "spec": {"type": "ExternalName", "externalName": "example.org"}},
]


def eslice(ns: str, service: str, endpoints: list[tuple[str, str, bool]], ports: list[dict[str, Any]],
           name: str = "") -> dict[str, Any]:
    """An EndpointSlice of `service` with (ip, hostname, ready) endpoints."""
    return {"metadata": {"namespace": ns, "name": name or f"{service}-a",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, **({"hostname": host} if host else {})}
                          for ip, host, ready in endpoints]}


SLICES = [
    eslice("prod", "web", [("10.1.0.5", "", True)], [{"name": "http", "port": 8080}]),
    eslice("prod", "db", [("10.1.0.8", "db-1", True), ("10.1.0.7", "db-0", True), ("10.1.0.10", "db-2", False)],
           [{"name": "pg", "port": 5432, "protocol": "TCP"}]),
    # The controller may list an endpoint in two slices for a moment: it still counts once.
    eslice("prod", "db", [("10.1.0.9", "", True), ("10.1.0.7", "db-0", True)],
           [{"name": "pg", "port": 5432, "protocol": "TCP"}], name="db-b"),
]
ZONE = dns.build_zone(SERVICES, SLICES, "cluster.local")


def ask(name: str, qtype: str = "A") -> DNSRecord:
    return DNSRecord.parse(dns.answer(ZONE, DNSRecord.question(name, qtype)).pack())


def rdata(reply: DNSRecord, qtype: str = "A") -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if QTYPE[rr.rtype] == qtype]


def test_service_name_resolves_to_its_cluster_ip() -> None:
    r = ask("web.prod.svc.cluster.local")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1
    assert rdata(r) == ["10.96.0.20"]
    assert r.rr[0].ttl == dns.DEFAULT_TTL
    assert rdata(ask("WEB.Prod.svc.cluster.local.")) == ["10.96.0.20"]  # names are case-insensitive


def test_headless_service_resolves_to_ready_endpoints_only() -> None:
    assert rdata(ask("db.prod.svc.cluster.local")) == ["10.1.0.7", "10.1.0.8", "10.1.0.9"]


def test_statefulset_pod_names_and_dashed_names_under_a_headless_service() -> None:
    assert rdata(ask("db-0.db.prod.svc.cluster.local")) == ["10.1.0.7"]
    assert rdata(ask("db-1.db.prod.svc.cluster.local")) == ["10.1.0.8"]
    assert rdata(ask("10-1-0-9.db.prod.svc.cluster.local")) == ["10.1.0.9"]
    assert ask("db-2.db.prod.svc.cluster.local").header.rcode == RCODE.NXDOMAIN  # not ready


def test_srv_for_named_ports() -> None:
    r = ask("_http._tcp.web.prod.svc.cluster.local", "SRV")
    assert rdata(r, "SRV") == ["0 100 80 web.prod.svc.cluster.local."]
    assert [str(rr.rdata) for rr in r.ar] == ["10.96.0.20"]  # the target's address in the additional section
    headless = ask("_pg._tcp.db.prod.svc.cluster.local", "SRV")
    assert sorted(rdata(headless, "SRV")) == ["0 100 5432 10-1-0-9.db.prod.svc.cluster.local.",
                                              "0 100 5432 db-0.db.prod.svc.cluster.local.",
                                              "0 100 5432 db-1.db.prod.svc.cluster.local."]
    assert ask("_nope._tcp.web.prod.svc.cluster.local", "SRV").header.rcode == RCODE.NXDOMAIN


def test_ptr_for_service_and_endpoint_ips() -> None:
    assert rdata(ask("20.0.96.10.in-addr.arpa", "PTR"), "PTR") == ["web.prod.svc.cluster.local."]
    assert rdata(ask("7.0.1.10.in-addr.arpa", "PTR"), "PTR") == ["db-0.db.prod.svc.cluster.local."]
    assert dns.is_cluster_name("7.0.1.10.in-addr.arpa.", ZONE)
    assert not dns.is_cluster_name("1.2.0.192.in-addr.arpa.", ZONE)  # unknown reverse names go upstream


def test_unknown_cluster_names_are_nxdomain_known_ones_without_records_are_nodata() -> None:
    for name in ("nope.prod.svc.cluster.local", "web.other.svc.cluster.local", "x.cluster.local"):
        assert ask(name).header.rcode == RCODE.NXDOMAIN, name
    nodata = ask("web.prod.svc.cluster.local", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == []
    assert ask("prod.svc.cluster.local").header.rcode == RCODE.NOERROR


def test_external_name_is_a_cname_and_pod_names_decode_their_address() -> None:
    r = ask("ext.prod.svc.cluster.local")
    assert rdata(r, "CNAME") == ["example.org."]
    assert rdata(ask("10-1-2-3.prod.pod.cluster.local")) == ["10.1.2.3"]
    assert ask("10-1-2.prod.pod.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_other_domains_are_not_ours_and_custom_domains_work() -> None:
    assert not dns.is_cluster_name("example.org.", ZONE)
    assert not dns.is_cluster_name("notcluster.local.", ZONE)
    zone = dns.build_zone(SERVICES, SLICES, "Corp.Example.")
    reply = dns.answer(zone, DNSRecord.question("web.prod.svc.corp.example", "A"))
    assert [str(rr.rdata) for rr in reply.rr] == ["10.96.0.20"]


def test_endpoints_with_hostnames_that_are_not_dns_labels_are_left_out() -> None:
    slices = [eslice("prod", "db", [("10.1.0.7", "Bad_Host", True), ("10.1.0.8", "x" * 64, True),
                                    ("10.1.0.9", "db-0", True)], [])]
    zone = dns.build_zone(SERVICES, slices)
    assert zone.a["db.prod.svc.cluster.local."] == ["10.1.0.9"]
    assert not any("bad_host" in name.lower() or "x" * 64 in name for name in zone.names)


def test_oversized_udp_answers_are_truncated() -> None:
    many = [eslice("prod", "db", [(f"10.1.{i // 250}.{i % 250 + 1}", "", True) for i in range(100)],
                   [{"port": 5432}])]
    zone = dns.build_zone(SERVICES, many)
    request = DNSRecord.question("db.prod.svc.cluster.local", "A")
    reply = dns.answer(zone, request)
    full = reply.pack()
    assert len(full) > 512
    short = DNSRecord.parse(dns.truncate_for_udp(reply, full, 512))
    assert short.header.tc == 1 and short.rr == []
    assert dns.truncate_for_udp(reply, full, 4096) == full
