"""apiserver/etcdmaintenance.py's decisions on a fake etcd: who maintains, what gets defragmented, in which order."""
from __future__ import annotations

from typing import Any

from apiserver.etcdmaintenance import Maintainer, Settings, needs_defrag
from apiserver.storage.etcd import MemberStatus

MiB = 2**20


def status(server: str, member: int, leader: int, size: int, in_use: int) -> MemberStatus:
    return MemberStatus(server, member, leader, size, in_use, 100, [])


class FakeEtcd:
    def __init__(self, own: str, statuses: list[MemberStatus], alarms: list[tuple[int, str]] | None = None):
        by_server = {s.server: s for s in statuses}
        self.servers = [own, *[s for s in by_server if s != own]]
        self.statuses = by_server
        self.raised = list(alarms or [])
        self.calls: list[Any] = []

    async def member_status(self, server: str) -> MemberStatus:
        return self.statuses[server]

    async def alarms(self) -> list[tuple[int, str]]:
        return self.raised

    async def defragment(self, server: str) -> None:
        self.calls.append(("defrag", server))

    async def compact(self, revision: int) -> None:
        self.calls.append(("compact", revision))

    async def disarm(self, member: int, alarm: str) -> None:
        self.calls.append(("disarm", member, alarm))


MEMBERS = [status("a", 1, 2, 300 * MiB, 10 * MiB), status("b", 2, 2, 300 * MiB, 10 * MiB),
           status("c", 3, 2, 20 * MiB, 10 * MiB)]


def test_needs_defrag_when_the_file_is_twice_its_data_and_enough_is_free() -> None:
    assert needs_defrag(status("a", 1, 1, 300 * MiB, 100 * MiB), 100 * MiB)
    assert not needs_defrag(status("a", 1, 1, 300 * MiB, 200 * MiB), 50 * MiB)  # not twice
    assert not needs_defrag(status("a", 1, 1, 30 * MiB, 1 * MiB), 100 * MiB)  # too little to gain


async def test_only_the_apiserver_beside_the_leader_maintains() -> None:
    follower = FakeEtcd("a", MEMBERS)
    await Maintainer(follower, Settings()).maintain()  # type: ignore[arg-type]
    assert follower.calls == []


async def test_the_leader_defragments_grown_members_followers_first() -> None:
    leader = FakeEtcd("b", MEMBERS)
    await Maintainer(leader, Settings(defrag_threshold=100 * MiB)).maintain()  # type: ignore[arg-type]
    assert leader.calls == [("defrag", "a"), ("defrag", "b")]  # c is small; b, the leader, last


async def test_nospace_alarm_compacts_defragments_everything_and_disarms() -> None:
    leader = FakeEtcd("b", MEMBERS, alarms=[(1, "NOSPACE"), (3, "NOSPACE")])
    await Maintainer(leader, Settings()).maintain()  # type: ignore[arg-type]
    assert leader.calls == [("compact", 100), ("defrag", "a"), ("defrag", "c"), ("defrag", "b"),
                            ("disarm", 1, "NOSPACE"), ("disarm", 3, "NOSPACE")]
