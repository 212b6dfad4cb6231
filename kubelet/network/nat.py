"""Egress NAT for pod traffic in a pkube-owned nftables table, applied with one atomic `nft -f` transaction.

The transaction first declares the table (a no-op if present), deletes it and re-creates it with the full
rule set, so applying twice leaves exactly one copy of the rules and no window without them.
"""
from __future__ import annotations

import ipaddress
import re
import subprocess

DEFAULT_TABLE = "pkube-nat"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class NatError(Exception):
    pass


def ruleset(table: str, pod_cidr: str, cluster_cidr: str = "") -> str:
    if not _NAME.match(table):
        raise NatError(f"invalid nftables table name {table!r}")
    cidr = ipaddress.IPv4Network(pod_cidr)
    # Pod traffic to other pods, on this node or (with a cluster CIDR) on another, stays unmasqueraded (pods
    # see each other's real IPs, a Kubernetes network rule); traffic leaving the pods' range is masqueraded
    # to the node's address.
    pods = ipaddress.IPv4Network(cluster_cidr) if cluster_cidr else cidr
    return (
        f"table ip {table} {{}}\n"
        f"delete table ip {table}\n"
        f"table ip {table} {{\n"
        f"  chain postrouting {{\n"
        f"    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {cidr} ip daddr != {pods} masquerade\n"
        f"  }}\n"
        f"}}\n"
    )


def _nft(script: str) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True, timeout=30)
    if proc.returncode != 0:
        raise NatError(f"nft failed: {proc.stderr.decode(errors='replace').strip()}")


def ensure_nat(table: str, pod_cidr: str, cluster_cidr: str = "") -> None:
    _nft(ruleset(table, pod_cidr, cluster_cidr))


def delete_nat(table: str) -> None:
    """Idempotent: declaring the table first makes the delete valid even when it does not exist."""
    if not _NAME.match(table):
        raise NatError(f"invalid nftables table name {table!r}")
    _nft(f"table ip {table} {{}}\ndelete table ip {table}\n")
