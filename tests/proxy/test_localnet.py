"""route_localnet bookkeeping across network namespaces (pklib/sysctl.py): the setting is per netns, so are
its users. The host's proxy and the proxy of a worker node (`cluster up --nodes N`) or of a joined machine,
each in a netns of its own, must each give back their own netns' value, whatever order they are cleaned up in.

The two "machines" are two private network namespaces with the real sysctl (each netns' own value, so the
machine's own setting is never touched) and the real proxy/localnet.py, run through `ip netns exec`; the
records go to a temporary state directory instead of /run/pkube/proxy.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.controlplane import ROOT
from tests.util import unique

pytestmark = pytest.mark.root

SYSCTL = "net.ipv4.conf.all.route_localnet"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout


def value(netns: str) -> str:
    return sh("ip", "netns", "exec", netns, "sysctl", "-n", SYSCTL).strip()


def enable(netns: str, state: Path, table: str) -> None:
    """What the proxy of `table` in `netns` does after its first sync."""
    sh("ip", "netns", "exec", netns, sys.executable, "-c", "import sys; from pathlib import Path; "
       "from proxy import localnet; localnet.enable(sys.argv[1], localnet.ROUTE_LOCALNET, Path(sys.argv[2]))",
       table, str(state))


def cleanup(netns: str, state: Path, table: str) -> None:
    """What `pkube proxy --cleanup --table T` does in `netns`: the table goes, the netns' tables are looked up."""
    sh("ip", "netns", "exec", netns, sys.executable, "-c", "import sys; from pathlib import Path; "
       "from proxy import localnet, nft; "
       "localnet.restore(sys.argv[1], nft.proxy_tables, localnet.ROUTE_LOCALNET, Path(sys.argv[2]))",
       table, str(state))


def netns_dir(netns: str, state: Path) -> Path:
    """Where the records of `netns` live: netns-<its inode>."""
    return state / f"netns-{os.stat(f'/run/netns/{netns}').st_ino}"


@pytest.fixture
def two_machines() -> Iterator[tuple[str, str, Path]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    host, worker = unique("pkln"), unique("pkln")
    state = Path(tempfile.mkdtemp(prefix="pkt-localnet-"))
    try:
        for netns in (host, worker):
            sh("ip", "netns", "add", netns)
            sh("ip", "netns", "exec", netns, "sysctl", "-qw", f"{SYSCTL}=0")
        yield host, worker, state / "proxy"
    finally:
        for netns in (host, worker):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


def test_each_netns_gives_back_its_own_value_whatever_the_cleanup_order(two_machines: tuple[str, str, Path]) -> None:
    host, worker, state = two_machines
    enable(host, state, "pkube-proxy-h")
    enable(worker, state, "pkube-proxy-w")
    assert (value(host), value(worker)) == ("1", "1")
    # The worker node goes first: from its netns it sees no pkube table at all; the host's record is not its
    # to drop (the bug: it was, and the host's cleanup then found no record and left route_localnet at 1).
    cleanup(worker, state, "pkube-proxy-w")
    assert value(worker) == "0"
    assert value(host) == "1"  # the host's proxy table still serves node ports on 127.0.0.1
    cleanup(host, state, "pkube-proxy-h")
    assert value(host) == "0"
    assert not list(state.iterdir())  # no record, and no directory of either netns, is left


def test_records_of_a_gone_netns_whose_inode_came_back_are_not_taken_for_the_new_ones(
        two_machines: tuple[str, str, Path]) -> None:
    host, _, state = two_machines
    # A netns that had turned it on and vanished without cleanup, under the inode the kernel gave `host` since.
    dead = netns_dir(host, state)
    dead.mkdir(parents=True)
    (dead / "cookie").write_text("1\n")  # cookies are never reused; the init netns has a different one
    (dead / "pkube-proxy-old.route_localnet").write_text("1\n")
    enable(host, state, "pkube-proxy-h")
    assert (netns_dir(host, state) / "pkube-proxy-h.route_localnet").read_text() == "0\n"
    assert not (dead / "pkube-proxy-old.route_localnet").exists()
    cleanup(host, state, "pkube-proxy-h")
    assert value(host) == "0" and not list(state.iterdir())
