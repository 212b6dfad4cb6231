"""Node IPAM against a real apiserver: distinct ranges, exhaustion reported, ranges released on
node deletion, and nothing handed out twice after a controller-manager restart."""
from __future__ import annotations

import ipaddress
import subprocess
import sys

from pklib.client import Client
from tests.scheduler.cluster import NODES, Cluster, cclient, cluster, events_for  # noqa: F401
from tests.support.controlplane import ROOT
from tests.util import unique, wait_for

FLAGS = ["--controllers", "nodeipam", "--cluster-cidr", "10.100.0.0/22", "--node-cidr-mask-size", "24"]


async def create_node(client: Client, name: str) -> None:
    await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})


async def pod_cidr(client: Client, name: str) -> str | None:
    cidr: str | None = ((await client.get(NODES, name)).get("spec") or {}).get("podCIDR")
    return cidr


async def test_each_node_gets_its_own_range_never_twice(cluster: Cluster, cclient: Client) -> None:  # noqa: F811
    manager = cluster.start("controller-manager", *FLAGS)
    names = [unique("node") for _ in range(5)]
    for n in names[:4]:
        await create_node(cclient, n)
    cidrs = [await wait_for(lambda: pod_cidr(cclient, n), 15, message=f"podCIDR of {n}") for n in names[:4]]
    assert len(set(cidrs)) == 4
    assert all(ipaddress.ip_network(c).subnet_of(ipaddress.ip_network("10.100.0.0/22")) for c in cidrs)
    node = await cclient.get(NODES, names[0])
    assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]

    # The range is full: the fifth node waits, with an event saying why.
    await create_node(cclient, names[4])
    await wait_for(lambda: events_for(cclient, "default", names[4], "CIDRNotAvailable"), 15,
                   message="CIDRNotAvailable event")
    assert await pod_cidr(cclient, names[4]) is None

    # Deleting a node frees its range for the waiting one.
    await cclient.delete(NODES, names[1])
    assert await wait_for(lambda: pod_cidr(cclient, names[4]), 15, message="freed range reused") == cidrs[1]

    # A restarted controller-manager learns the used ranges from the nodes before allocating.
    manager.kill()
    await cclient.delete(NODES, names[2])
    cluster.start("controller-manager", *FLAGS)
    late = unique("node")
    await create_node(cclient, late)
    got = await wait_for(lambda: pod_cidr(cclient, late), 15, message=f"podCIDR of {late}")
    assert got == cidrs[2]
    remaining = [await pod_cidr(cclient, n) for n in (names[0], names[3], names[4], late)]
    assert len(set(remaining)) == 4


def test_bad_cluster_cidr_is_a_one_line_usage_error() -> None:
    r = subprocess.run([sys.executable, "-m", "launcher", "controller-manager", "--server", "http://127.0.0.1:1",
                        "--cluster-cidr", "10.0.0.1/16"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "argument --cluster-cidr: not a network CIDR: 10.0.0.1/16 has host bits set" in r.stderr
    assert "Traceback" not in r.stderr
