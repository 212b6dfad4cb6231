"""Container states read from runc's state files (kubelet/runtime/runccli.py), by runc's own rule: the PID runc
recorded must still be the same process (its start time), the exec FIFO means `created`."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from kubelet.runtime.runccli import EXEC_FIFO, Runc, _start_time


def write_state(root: Path, cid: str, pid: int, start: int, fifo: bool = False) -> None:
    (root / cid).mkdir(parents=True)
    (root / cid / "state.json").write_text(json.dumps({"id": cid, "init_process_pid": pid,
                                                       "init_process_start": start, "config": {}}))
    if fifo:
        os.mkfifo(root / cid / EXEC_FIFO)


def test_a_live_init_is_running_or_created_and_a_reused_or_gone_pid_is_stopped(tmp_path: Path) -> None:
    me = os.getpid()
    start = _start_time(me)
    assert start is not None
    write_state(tmp_path, "running", me, start)
    write_state(tmp_path, "created", me, start, fifo=True)
    write_state(tmp_path, "reused", me, start + 1)  # runc's PID now belongs to another process
    write_state(tmp_path, "gone", 2**22 + 7, 1)  # above any pid_max: no such process
    (tmp_path / "being-created").mkdir()  # runc writes state.json once the init exists
    states = asyncio.run(Runc(str(tmp_path)).list_states())
    assert {cid: (s["status"], s["pid"]) for cid, s in states.items()} == {
        "running": ("running", me), "created": ("created", me), "reused": ("stopped", 0), "gone": ("stopped", 0)}


def test_no_root_yet_means_no_containers(tmp_path: Path) -> None:
    assert asyncio.run(Runc(str(tmp_path / "absent")).list_states()) == {}


def test_only_the_asked_containers_and_a_rewritten_state_file_is_read_again(tmp_path: Path) -> None:
    me = os.getpid()
    start = _start_time(me)
    assert start is not None
    runc = Runc(str(tmp_path))
    write_state(tmp_path, "a", me, start)
    write_state(tmp_path, "b", me, start, fifo=True)
    assert set(asyncio.run(runc.list_states(["b", "not-there"]))) == {"b"}
    assert asyncio.run(runc.list_states())["a"]["status"] == "running"
    # the same id with another init (its file replaced: a new inode): the new file counts, not the parsed old one
    state = tmp_path / "a" / "state.json"
    state.unlink()
    state.write_text(json.dumps({"id": "a", "init_process_pid": me, "init_process_start": start + 1}))
    assert asyncio.run(runc.list_states(["a"]))["a"] == {"id": "a", "status": "stopped", "pid": 0}
    (tmp_path / "b" / "state.json").unlink()
    os.unlink(tmp_path / "b" / EXEC_FIFO)
    (tmp_path / "b").rmdir()
    assert set(asyncio.run(runc.list_states())) == {"a"}
