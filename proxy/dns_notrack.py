"""Keeping DNS queries to the cluster DNS address out of conntrack (NOTRACK in the raw hooks).

Why: glibc and musl send a lookup's A and AAAA queries back to back from one socket, so both packets
open the same new conntrack flow. When two CPUs handle them at once, both build an entry and the
second loses the insert (`conntrack -S`: insert_failed); the kernel drops that packet when it cannot
merge the two entries (older kernels, or different NAT results) and the resolver waits out its 5 s
timeout, per attempt and per search domain. Each query also costs a conntrack entry for 30-120 s,
and a full table drops new flows of every kind. (The 12-30 s lookups seen from busy pkube nodes had
another cause, the node bridge's MAC moving with pod churn: kubelet/network/bridge.py.)

Kubernetes' NodeLocal DNSCache answers on a node-local address with NOTRACK rules for it; pkube's DNS
server does the same for the addresses it listens on (its ClusterIP is a local address on `lo`, see
dns_main.py, so no NAT is ever needed on the way to it): no entry, nothing to race on. Queries to the
address (from pods, prerouting; from the host, output) and the replies from it (output) are untracked.
"""
from __future__ import annotations

import ipaddress

from .nft import apply_script, delete_table

TABLE_PREFIX = "pkube-dns-"


def table_name(listen: list[tuple[str, int]]) -> str:
    """One table per DNS server, named after its first served address (two servers cannot share one)."""
    host, port = listen[0]
    return f"{TABLE_PREFIX}{host.replace('.', '-')}-{port}"


def tracked_free(listen: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The listen addresses that get NOTRACK rules: not loopback ones, which pods cannot reach anyway."""
    return [(h, p) for h, p in listen if not ipaddress.IPv4Address(h).is_loopback]


def ruleset(table: str, listen: list[tuple[str, int]]) -> str:
    """Declare, delete and re-create the table in one transaction: applying twice leaves one copy."""
    queries = [f"ip daddr {h} {proto} dport {p} notrack" for h, p in listen for proto in ("udp", "tcp")]
    replies = [f"ip saddr {h} {proto} sport {p} notrack" for h, p in listen for proto in ("udp", "tcp")]
    lines = [f"table ip {table} {{}}", f"delete table ip {table}", f"table ip {table} {{",
             "  chain prerouting {", "    type filter hook prerouting priority raw; policy accept;",
             *(f"    {r}" for r in queries), "  }",
             "  chain output {", "    type filter hook output priority raw; policy accept;",
             *(f"    {r}" for r in queries + replies), "  }", "}"]
    return "\n".join(lines) + "\n"


def ensure(listen: list[tuple[str, int]]) -> str:
    """Install the rules for `listen`; returns the table name ("" when there is nothing to exempt)."""
    exempt = tracked_free(listen)
    if not exempt:
        return ""
    table = table_name(listen)
    apply_script(ruleset(table, exempt))
    return table


def remove(listen: list[tuple[str, int]]) -> None:
    """Idempotent; what `pkube dns --cleanup` and a stopping server do."""
    if tracked_free(listen):
        delete_table(table_name(listen))
