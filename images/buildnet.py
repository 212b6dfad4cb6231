"""The network of a `RUN` step: a sandbox network namespace with NAT to the host, as BuildKit's default.

Each RUN (unless `--network=none`) gets a named netns `pkube-build-<pid>-<hex>` and a veth pair: `eth0` inside with
.2 of a /30 taken from SUBNET, the host end `pkbuild<hex>` with .1, the sandbox's gateway and default route.
The step reaches the host's services listening on that gateway (or on every address) and, through an
nftables masquerade in its own table `pkube-build-<hex>`, whatever the host reaches (package indexes).
Host services bound to 127.0.0.1 stay out of reach (as with Docker): the node's etcd, apiserver and kubelet
listen there. Everything is removed when the step ends; what a killed build left behind (its pid in the
netns name is gone) is removed by the next build's step.

`net.ipv4.ip_forward` is turned on for the step if it was off, with the kubelet's records (pklib/sysctl.py,
the host veth's name as the user key), and given back by the last user.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pklib.hostnet import delete_link, link_exists
from pklib.netns import create_netns, inside, list_netns, netns_path, remove_netns
from pklib.sysctl import RUN_DIR, SharedSysctl

from images.errors import BuildError

SUBNET = ipaddress.IPv4Network("10.253.0.0/16")
NETNS_PREFIX = "pkube-build-"
VETH_PREFIX = "pkbuild"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# The kubelet's records: a build and a node on one machine must agree on the value to give back.
IP_FORWARD_STATE = RUN_DIR / "kubelet"
_LOCK = RUN_DIR / "build-net.lock"
_RESOLV_FALLBACK = Path("/run/systemd/resolve/resolv.conf")   # systemd-resolved's upstream servers


@dataclass(frozen=True)
class Sandbox:
    netns: str                        # path of the named network namespace
    gateway: ipaddress.IPv4Address    # the host's end
    address: ipaddress.IPv4Address    # the step's eth0
    resolv_conf: str                  # what the step sees as /etc/resolv.conf


def _nft(script: str) -> None:
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True, timeout=30)
    except OSError as e:
        raise BuildError(f"the network of RUN steps needs nft (apt-get install nftables), or use "
                         f"--network=none: {e.strerror}") from None
    if proc.returncode != 0:
        raise BuildError(f"nft: {proc.stderr.decode(errors='replace').strip()}")


def _taken(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    nets = [ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
            for a in ipr.get_addr(family=socket.AF_INET)]
    for r in ipr.get_routes(family=socket.AF_INET):
        if r.get("dst_len"):
            nets.append(ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False))
    return nets


def _free_subnet(ipr: IPRoute) -> ipaddress.IPv4Network:
    taken = _taken(ipr)
    count = SUBNET.num_addresses // 4
    for index in random.sample(range(count), 64):   # (not a list of all 16384 /30s: that alone takes 0.2 s)
        net = ipaddress.IPv4Network((int(SUBNET.network_address) + 4 * index, 30))
        if not any(net.overlaps(t) for t in taken):
            return net
    raise BuildError(f"no free /30 left in {SUBNET} for the build network")


def resolv_conf(text: str, fallback: str = "") -> str:
    """The host's resolver settings for a sandbox: loopback name servers (a local stub such as
    systemd-resolved's 127.0.0.53) cannot be reached from it, so they give way to `fallback`'s upstream ones."""
    def servers(t: str) -> list[str]:
        out = []
        for line in t.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    if not ipaddress.ip_address(parts[1].split("%")[0]).is_loopback:
                        out.append(parts[1])
                except ValueError:
                    continue
        return out
    other = [line for line in text.splitlines() if line.split()[:1] in (["search"], ["options"], ["domain"])]
    names = servers(text) or servers(fallback)
    return "".join(f"{line}\n" for line in [*other, *(f"nameserver {n}" for n in names)])


def _host_resolv_conf() -> str:
    def read(p: Path) -> str:
        try:
            return p.read_text()
        except OSError:
            return ""
    return resolv_conf(read(Path("/etc/resolv.conf")), read(_RESOLV_FALLBACK))


def _forwarding() -> SharedSysctl:
    return SharedSysctl(IP_FORWARD, IP_FORWARD_STATE, "ip_forward")


def _teardown(suffix: str, ns_name: str, quiet: bool = False) -> None:
    """Remove one sandbox's table, veth pair and netns, and give back ip_forward; idempotent. Every part is
    tried; the first failure is raised after (unless `quiet`: the step is failing already)."""
    table, veth = f"pkube-build-{suffix}", VETH_PREFIX + suffix
    forwarding = _forwarding()
    first: Exception | None = None
    for part in (lambda: _nft(f"table ip {table} {{}}\ndelete table ip {table}\n"),
                 lambda: delete_link(veth),
                 lambda: remove_netns(ns_name),
                 lambda: forwarding.restore(veth, lambda: {k for k in forwarding.recorded() if link_exists(k)})):
        try:
            part()
        except Exception as e:  # noqa: BLE001 - the rest must still be removed
            first = first or e
    if first is not None and not quiet:
        raise BuildError(f"cannot remove the build network {ns_name}: {first}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale() -> None:
    """Remove the sandboxes of builds that were killed before they could clean up."""
    for name in list_netns(NETNS_PREFIX):
        pid, _, suffix = name[len(NETNS_PREFIX):].partition("-")
        if pid.isdigit() and suffix and not _alive(int(pid)):
            _teardown(suffix, name)


@contextlib.contextmanager
def sandbox() -> Iterator[Sandbox]:
    suffix = uuid.uuid4().hex[:8]
    ns_name, veth = f"{NETNS_PREFIX}{os.getpid()}-{suffix}", VETH_PREFIX + suffix
    table = f"pkube-build-{suffix}"
    try:
        try:
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            with open(_LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # two builds must not pick the same /30
                remove_stale()
                create_netns(ns_name)
                with IPRoute() as ipr:
                    net = _free_subnet(ipr)
                    gateway, address = net[1], net[2]
                    ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns_name})
                    idx = ipr.link_lookup(ifname=veth)[0]
                    ipr.addr("add", index=idx, address=str(gateway), prefixlen=30)
                    ipr.link("set", index=idx, state="up")

            def configure(ns: IPRoute) -> None:
                ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
                eth0 = ns.link_lookup(ifname="eth0")[0]
                ns.addr("add", index=eth0, address=str(address), prefixlen=30)
                ns.link("set", index=eth0, state="up")
                ns.route("add", dst="0.0.0.0/0", gateway=str(gateway))
            inside(ns_name, configure)
            _nft(f"table ip {table} {{\n  chain postrouting {{\n"
                 f"    type nat hook postrouting priority srcnat; policy accept;\n"
                 f"    ip saddr {address} oifname != \"{veth}\" masquerade\n  }}\n}}\n")
            _forwarding().enable(veth)
        except (OSError, NetlinkError) as e:
            raise BuildError(f"cannot set up the network of the RUN step: {e}") from None
        yield Sandbox(netns_path(ns_name), gateway, address, _host_resolv_conf())
    except BaseException:
        _teardown(suffix, ns_name, quiet=True)
        raise
    _teardown(suffix, ns_name)
