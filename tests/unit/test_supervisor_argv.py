"""The command line of a component the supervisor restarts: its dead leader-election identities are named."""
from __future__ import annotations

from pkctl.cluster.supervisor import _comparable, with_predecessors

GROUP = ["pkube", "group", "--", "controller-manager", "--leader-elect", "--leader-elect-identity", "{cm}",
         "--", "scheduler", "--leader-elect", "--leader-elect-identity", "{sched}"]


def argv(cm: str, sched: str) -> list[str]:
    return [a.format(cm=cm, sched=sched) for a in GROUP]


def test_each_new_identity_names_the_exited_process_identity_in_the_same_place() -> None:
    restarted = with_predecessors(argv("cp2_new1", "cp2_new2"), argv("cp2_old1", "cp2_old2"))
    assert restarted == ["pkube", "group", "--", "controller-manager", "--leader-elect", "--leader-elect-identity",
                         "cp2_new1", "--leader-elect-predecessor", "cp2_old1", "--", "scheduler", "--leader-elect",
                         "--leader-elect-identity", "cp2_new2", "--leader-elect-predecessor", "cp2_old2"]
    # a restart of that one names its own identities only, not the ones before
    again = with_predecessors(argv("cp2_new3", "cp2_new4"), restarted)
    assert again.count("--leader-elect-predecessor") == 2 and again[again.index("cp2_new3") + 2] == "cp2_new1"
    assert again[again.index("cp2_new4") + 2] == "cp2_new2"


def test_a_first_start_or_a_stable_identity_names_nobody() -> None:
    assert with_predecessors(argv("a", "b"), []) == argv("a", "b")
    assert with_predecessors(argv("cp_node", "cp_node"), argv("cp_node", "cp_node")) == argv("cp_node", "cp_node")
    assert with_predecessors(["etcd", "--name", "x"], ["etcd", "--name", "x"]) == ["etcd", "--name", "x"]


def test_identities_and_predecessors_are_no_config_change() -> None:
    restarted = with_predecessors(argv("n1", "n2"), argv("o1", "o2"))
    assert _comparable(restarted) == _comparable(argv("z1", "z2")) == _comparable(argv("o1", "o2"))
    assert _comparable(argv("a", "b") + ["--v", "2"]) != _comparable(argv("a", "b"))


def test_the_time_the_predecessor_exited_goes_with_its_identity_and_is_no_config_change() -> None:
    restarted = with_predecessors(argv("n1", "n2"), argv("o1", "o2"), exited_at=1765000000.25)
    at = restarted.index("o1")
    assert restarted[at + 1:at + 3] == ["--leader-elect-predecessor-exited", "1765000000.250"]
    assert restarted[restarted.index("o2") + 1:] == ["--leader-elect-predecessor-exited", "1765000000.250"]
    assert _comparable(restarted) == _comparable(argv("z1", "z2"))
    again = with_predecessors(argv("n3", "n4"), restarted, exited_at=1765000009.0)
    assert again.count("--leader-elect-predecessor-exited") == 2 and "1765000000.250" not in again
