"""Two schedulers with --leader-elect: only the Lease holder schedules; killing it hands over."""
from __future__ import annotations

from pklib.client import Client
from pklib.errors import ApiError
from tests.scheduler.cluster import LEASES, PODS, Cluster, delete_nodes, pod_body, start_hollow, wait_bound
from tests.util import wait_for

ELECTION = ["--leader-elect", "--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3",
            "--leader-elect-retry-period", "0.5"]


async def test_leader_killed_standby_takes_over(cluster: Cluster, cclient: Client, cns: str) -> None:
    cluster.start("controller-manager", "--controllers", "nodeipam")
    comp, names = await start_hollow(cluster, cclient, 2)
    schedulers = {ident: cluster.start("scheduler", *ELECTION, "--leader-elect-identity", ident)
                  for ident in ("sched-a", "sched-b")}

    leader = await wait_for(lambda: holder(cclient), 20, message="a scheduler holding the lease")
    assert leader in schedulers
    await cclient.create(PODS, pod_body("before"), cns)
    assert await wait_bound(cclient, cns, "before") in names

    schedulers[leader].kill()
    standby = next(i for i in schedulers if i != leader)
    # Lease duration 4 s: the standby must take over within a few seconds of the leader dying.
    await wait_for(lambda: holder_is(cclient, standby), 15, message=f"{standby} taking the lease")
    await cclient.create(PODS, pod_body("after"), cns)
    assert await wait_bound(cclient, cns, "after", timeout=10) in names
    assert schedulers[standby].proc.poll() is None
    comp.kill()
    await delete_nodes(cclient, names)


async def holder(client: Client) -> str | None:
    try:
        lease = await client.get(LEASES, "kube-scheduler", "kube-system")
    except ApiError:
        return None  # not created yet
    ident: str | None = (lease.get("spec") or {}).get("holderIdentity")
    return ident


async def holder_is(client: Client, expected: str) -> bool:
    return await holder(client) == expected


async def test_a_successor_named_by_the_supervisor_takes_the_dead_leaders_lease_at_once(
        cluster: Cluster, cclient: Client, cns: str) -> None:
    """A restarted leader has a new identity; when its supervisor names the exited one
    (--leader-elect-predecessor), the new process takes the Lease at once instead of waiting its 60 s out. One
    that names somebody else still waits for the holder."""
    slow = ["--leader-elect", "--leader-elect-lease-duration", "60", "--leader-elect-renew-deadline", "40",
            "--leader-elect-retry-period", "0.5"]
    for earlier in cluster.components:  # this module's cluster: a scheduler of the test before still holds the Lease
        if earlier.name == "scheduler":
            earlier.kill()
    first = cluster.start("scheduler", *slow, "--leader-elect-identity", "sched-1")
    await wait_for(lambda: holder_is(cclient, "sched-1"), 20, message="sched-1 holding the lease")
    first.kill()

    stranger = cluster.start("scheduler", *slow, "--leader-elect-identity", "sched-x",
                             "--leader-elect-predecessor", "sched-0")
    async def stranger_waits() -> bool:
        return "is held by sched-1; waiting" in stranger.log()
    await wait_for(stranger_waits, 20, message="sched-x waiting")
    successor = cluster.start("scheduler", *slow, "--leader-elect-identity", "sched-2",
                              "--leader-elect-predecessor", "sched-1")
    await wait_for(lambda: holder_is(cclient, "sched-2"), 20, message="sched-2 taking the lease from sched-1")
    assert "taking it over from sched-1, which has exited" in successor.log()
    comp, names = await start_hollow(cluster, cclient, 1)
    await cclient.create(PODS, pod_body("after"), cns)
    assert await wait_bound(cclient, cns, "after", timeout=10) in names
    assert await holder(cclient) == "sched-2" and stranger.proc.poll() is None
    comp.kill()
    stranger.kill()
    successor.kill()
    await delete_nodes(cclient, names)
