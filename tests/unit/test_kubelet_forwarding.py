"""ip_forward bookkeeping (kubelet/network/forwarding.py) on stand-in files: the kubelet records the value it
found, and the node cleanup of the last pkube node on the machine puts it back."""
from __future__ import annotations

from pathlib import Path

from kubelet.network import forwarding


def setup(tmp_path: Path, value: str) -> tuple[Path, Path]:
    sysctl = tmp_path / "ip_forward"
    sysctl.write_text(value + "\n")
    return sysctl, tmp_path / "state"


def test_two_nodes_the_last_cleanup_restores(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "0")
    bridges = {"pkube0", "pkb1234"}  # both clusters' bridges exist
    exists = bridges.__contains__
    forwarding.enable("pkube0", sysctl, state)
    assert sysctl.read_text() == "1\n"
    forwarding.enable("pkb1234", sysctl, state)  # found it on already: still records the original 0
    forwarding.enable("pkube0", sysctl, state)  # a restarted kubelet keeps its first record
    assert (state / "pkube0.ip_forward").read_text() == "0\n"
    assert (state / "pkb1234.ip_forward").read_text() == "0\n"
    bridges.discard("pkube0")  # the first cluster goes down: its cleanup deleted the bridge first
    forwarding.restore("pkube0", sysctl, state, exists)
    assert sysctl.read_text() == "1\n"  # the other cluster's pods still need forwarding
    bridges.discard("pkb1234")
    forwarding.restore("pkb1234", sysctl, state, exists)
    assert sysctl.read_text() == "0\n" and not list(state.iterdir())


def test_a_machine_that_had_it_on_keeps_it(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "1")
    forwarding.enable("pkube0", sysctl, state)
    forwarding.restore("pkube0", sysctl, state, lambda _: False)
    assert sysctl.read_text() == "1\n"


def test_a_node_that_never_changed_it_restores_nothing(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "1")  # set by someone else (Docker, the admin)
    forwarding.restore("pkube0", sysctl, state, lambda _: False)
    assert sysctl.read_text() == "1\n"


def test_records_of_nodes_gone_without_cleanup_do_not_block_the_restore(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "0")
    forwarding.enable("gone", sysctl, state)  # its bridge was deleted by hand, no cleanup ran
    forwarding.enable("pkube0", sysctl, state)
    forwarding.restore("pkube0", sysctl, state, lambda _: False)
    assert sysctl.read_text() == "0\n" and not list(state.iterdir())
