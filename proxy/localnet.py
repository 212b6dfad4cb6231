"""`net.ipv4.conf.all.route_localnet`: turned on while pkube proxies run, restored when the last one is cleaned up.

DNAT of connections to 127.0.0.1:NODEPORT needs the kernel to route 127/8 sources off `lo`. Like
kube-proxy the proxy sets it for the whole node; unlike kube-proxy it gives the machine back as it was:
the value from before the first change is written to a small state file per table
(`/run/pkube/proxy/<table>.route_localnet`, on tmpfs: a reboot resets the sysctl too), and
`pkube proxy --cleanup --table T` restores it once no other pkube proxy table is left in nftables.
Several proxies (tests, local clusters) may share a machine: each record carries the original value, so
whichever is cleaned up last restores it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

log = logging.getLogger("proxy")

ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")
STATE_DIR = Path("/run/pkube/proxy")
_SUFFIX = ".route_localnet"


def _record(table: str, state_dir: Path) -> Path:
    return state_dir / f"{table}{_SUFFIX}"


def _others(table: str, state_dir: Path) -> dict[str, str]:
    """Table -> original value recorded by the other proxies' tables."""
    out = {}
    for path in state_dir.glob(f"*{_SUFFIX}") if state_dir.is_dir() else ():
        name = path.name[: -len(_SUFFIX)]
        if name != table:
            try:
                out[name] = path.read_text().strip()
            except OSError:
                continue  # removed meanwhile by its own cleanup
    return out


def enable(table: str, sysctl: Path = ROUTE_LOCALNET, state_dir: Path = STATE_DIR) -> None:
    """Set route_localnet=1, first recording for `table` the value the machine had before any pkube proxy."""
    record = _record(table, state_dir)
    current = sysctl.read_text().strip()
    if not record.exists():
        # Another proxy may have changed it already: its record holds the original value, ours must too.
        original = next(iter(sorted(_others(table, state_dir).values())), current)
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(original + "\n")
        os.replace(tmp, record)  # never a half-written record
    if current != "1":
        sysctl.write_text("1\n")
        log.info("set net.ipv4.conf.all.route_localnet=1 for node ports on 127.0.0.1 (was %s)", current)


def restore(table: str, proxy_tables: Callable[[], set[str]], sysctl: Path = ROUTE_LOCALNET,
            state_dir: Path = STATE_DIR) -> None:
    """Forget `table`'s record; put the original value back when no other pkube proxy table is left.

    `proxy_tables` lists the pkube proxy tables in nftables (whether or not their proxy runs, as their
    rules keep working): while one remains, node ports on 127.0.0.1 still need the setting.
    """
    record = _record(table, state_dir)
    try:
        original = record.read_text().strip()
    except FileNotFoundError:
        return  # this table never changed anything (or was cleaned up already)
    record.unlink(missing_ok=True)
    if proxy_tables() - {table}:
        return
    # No proxy table is left: any other record belongs to a table deleted without --cleanup.
    for stale in state_dir.glob(f"*{_SUFFIX}"):
        stale.unlink(missing_ok=True)
    if original in ("0", "1") and sysctl.read_text().strip() != original:
        sysctl.write_text(original + "\n")
        log.info("restored net.ipv4.conf.all.route_localnet=%s", original)
