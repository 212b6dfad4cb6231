"""route_localnet bookkeeping (proxy/localnet.py) on stand-in files: set once, restored by the last cleanup."""
from __future__ import annotations

from pathlib import Path

from proxy import localnet


def setup(tmp_path: Path, value: str) -> tuple[Path, Path]:
    sysctl = tmp_path / "route_localnet"
    sysctl.write_text(value + "\n")
    return sysctl, tmp_path / "state"


def test_enable_records_the_original_and_cleanup_restores_it(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "0")
    localnet.enable("t1", sysctl, state)
    assert sysctl.read_text() == "1\n"
    localnet.enable("t1", sysctl, state)  # a restarted proxy keeps the first record
    assert (state / "t1.route_localnet").read_text() == "0\n"
    localnet.restore("t1", lambda: set(), sysctl, state)
    assert sysctl.read_text() == "0\n" and not list(state.iterdir())


def test_the_last_of_several_proxies_restores(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "0")
    localnet.enable("t1", sysctl, state)
    localnet.enable("t2", sysctl, state)  # found it at 1 already: still records the original 0
    tables = {"t1", "t2"}
    localnet.restore("t1", lambda: tables - {"t1"}, sysctl, state)
    assert sysctl.read_text() == "1\n"  # t2's rules still serve node ports on 127.0.0.1
    localnet.restore("t2", lambda: set(), sysctl, state)
    assert sysctl.read_text() == "0\n"


def test_a_machine_that_had_it_on_keeps_it_and_unknown_tables_change_nothing(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "1")
    localnet.enable("t1", sysctl, state)
    localnet.restore("t1", lambda: set(), sysctl, state)
    assert sysctl.read_text() == "1\n"
    sysctl.write_text("0\n")
    localnet.restore("never-started", lambda: set(), sysctl, state)  # no record: not ours to touch
    assert sysctl.read_text() == "0\n"


def test_records_of_tables_deleted_without_cleanup_go_with_the_last_cleanup(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "0")
    localnet.enable("gone", sysctl, state)  # its table was deleted by hand: the record stays behind
    localnet.enable("t1", sysctl, state)
    localnet.restore("t1", lambda: set(), sysctl, state)
    assert sysctl.read_text() == "0\n" and not list(state.iterdir())


def test_a_table_that_never_turned_it_on_does_not_keep_it_on(tmp_path: Path) -> None:
    sysctl, state = setup(tmp_path, "0")
    localnet.enable("t1", sysctl, state)
    # t2 exists (a proxy that has not synced yet, a table a test made) but holds no record: it would never
    # restore the setting, so t1's cleanup must.
    localnet.restore("t1", lambda: {"t1", "t2"}, sysctl, state)
    assert sysctl.read_text() == "0\n" and not list(state.iterdir())


def test_a_proxy_starting_while_the_last_one_restores_records_the_true_original(tmp_path: Path) -> None:
    # t2 enables while t1's restore is between dropping its record and writing the original back: without
    # one lock around both, t2 would record the 1 about to go and later "restore" the machine to 1.
    import threading
    sysctl, state = setup(tmp_path, "0")
    localnet.enable("t1", sysctl, state)
    started = threading.Thread(target=localnet.enable, args=("t2", sysctl, state))

    def live_while_t2_starts() -> set[str]:
        started.start()
        started.join(0.3)  # with the lock it waits for this restore to end
        return set()
    localnet.restore("t1", live_while_t2_starts, sysctl, state)
    started.join(10)
    assert (state / "t2.route_localnet").read_text() == "0\n" and sysctl.read_text() == "1\n"
    localnet.restore("t2", lambda: set(), sysctl, state)
    assert sysctl.read_text() == "0\n"
