"""`net.ipv4.conf.all.route_localnet`: turned on while pkube proxies run, restored when the last one is cleaned up.

DNAT of connections to 127.0.0.1:NODEPORT needs the kernel to route 127/8 sources off `lo`. Like
kube-proxy the proxy sets it for the whole node, and like kube-proxy its table drops what this would
otherwise let in: packets from another interface to 127.0.0.0/8 that were not DNAT'ed (rules.py,
CVE-2020-8558). Unlike kube-proxy it gives the machine back as it was: the value from before the first
change is recorded per table (`/run/pkube/proxy/netns-<inode>/<table>.route_localnet`, see pklib/sysctl.py), and
`pkube proxy --cleanup --table T` restores it once no other pkube proxy table that turned it on is left in nftables.
The setting, the tables and so the records belong to the proxy's network namespace: the proxy of a worker node
(`cluster up --nodes N`) or of a joined machine, each in a netns of its own, neither sees nor restores the host's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from pklib.sysctl import RUN_DIR, SharedSysctl

ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")
STATE_DIR = RUN_DIR / "proxy"


def setting(sysctl: Path = ROUTE_LOCALNET, state_dir: Path = STATE_DIR) -> SharedSysctl:
    """The bookkeeping (its `record(table)`, `recorded()` in the caller's netns)."""
    return SharedSysctl(sysctl, state_dir, "route_localnet")


def enable(table: str, sysctl: Path = ROUTE_LOCALNET, state_dir: Path = STATE_DIR) -> None:
    """Set route_localnet=1, first recording for `table` the value the machine had before any pkube proxy."""
    setting(sysctl, state_dir).enable(table)


def restore(table: str, proxy_tables: Callable[[], set[str]], sysctl: Path = ROUTE_LOCALNET,
            state_dir: Path = STATE_DIR) -> None:
    """Forget `table`'s record; put the original value back when no other pkube proxy table is left.

    `proxy_tables` lists the pkube proxy tables in nftables (whether or not their proxy runs, as their
    rules keep working): while one that turned the setting on remains, its node ports on 127.0.0.1 need it.
    """
    setting(sysctl, state_dir).restore(table, proxy_tables)
