"""Host sysctls that pkube components turn on and give back: set while needed, restored by the last user.

Several pkube users (the proxy tables and kubelet bridges of local clusters and tests) may share one
machine. Each user that turns a setting on writes a small record, `<key>.<name>` (in `state_dir`, or in
its netns' directory there: see below), holding the
value the machine had before any pkube user changed it (later users copy it from an earlier record). The
state directory is under /run (tmpfs): a reboot resets the sysctls too. Restoring forgets one user's
record and puts the original value back only when no other user is still live; records of users that
went away without cleaning up are dropped then. Both take an flock on the state directory, so a user starting
while the last one restores cannot record the value that is about to be given back.

A sysctl under /proc/sys/net belongs to the caller's network namespace (a worker node of `cluster up --nodes N`
or a joined "machine" runs in a netns of its own, with its own route_localnet and ip_forward). Its records are
therefore kept per netns, in `<state_dir>/netns-<inode of /proc/self/ns/net>/`: each user sees and restores only
the users of its own netns, whose value it shares. (With one directory for all, a worker's cleanup, seeing none
of the host's proxy tables or bridges from its netns, took the host's records for stale ones and deleted them,
and the host's own cleanup then left the host's setting changed.) A netns inode can be reused once its netns is
gone; the directory holds the netns cookie (never reused while the machine runs), so records left by a dead
netns are not taken for those of a new one with the same inode.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("sysctl")

RUN_DIR = Path("/run/pkube")
NET_SYSCTLS = Path("/proc/sys/net")  # per network namespace
SO_NETNS_COOKIE = getattr(socket, "SO_NETNS_COOKIE", 71)  # Linux >= 5.14; Python does not name it yet
COOKIE = "cookie"


def netns_inode() -> int:
    """The caller's network namespace, as `readlink /proc/PID/ns/net` shows it."""
    return os.stat("/proc/self/ns/net").st_ino


def netns_cookie() -> str | None:
    """The caller's netns cookie: unlike the inode, never given to another netns while the machine runs (None
    on a kernel without SO_NETNS_COOKIE)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            return str(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder))
    except OSError:
        return None


@dataclass(frozen=True)
class SharedSysctl:
    sysctl: Path  # e.g. /proc/sys/net/ipv4/ip_forward
    state_dir: Path  # where the records live
    name: str  # the records' suffix and the name in log lines, e.g. "ip_forward"

    def records_dir(self) -> Path:
        """Where the records of the caller's users are: one directory per network namespace for a net sysctl,
        the state directory itself for a machine-wide one (or a stand-in file in tests)."""
        if self.sysctl.is_relative_to(NET_SYSCTLS):
            return self.state_dir / f"netns-{netns_inode()}"
        return self.state_dir

    def record(self, key: str) -> Path:
        """`key`'s record in the caller's network namespace."""
        return self.records_dir() / f"{key}.{self.name}"

    def recorded(self) -> dict[str, str]:
        """User key -> the original value its record holds (users of the caller's network namespace)."""
        suffix = f".{self.name}"
        out = {}
        records = self.records_dir()
        for path in records.glob(f"*{suffix}") if records.is_dir() else ():
            try:
                out[path.name[: -len(suffix)]] = path.read_text().strip()
            except OSError:
                continue  # removed meanwhile by its own restore
        return out

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One user at a time reads and changes the records and the sysctl (several processes share them): a
        user enabling while the last one restores would otherwise record the value that is about to go."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._drop_if_stale()
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _drop_if_stale(self) -> None:
        """Records under the caller's netns inode but of another netns cookie are those of a netns that is gone
        (its inode now names the caller's): nobody will restore anything in a netns that no longer exists."""
        records = self.records_dir()
        if records == self.state_dir or not records.is_dir():
            return
        try:
            theirs = (records / COOKIE).read_text().strip()
        except FileNotFoundError:
            theirs = None
        if theirs != netns_cookie():
            shutil.rmtree(records, ignore_errors=True)

    def enable(self, key: str, value: str = "1") -> None:
        """Set the sysctl to `value`, first recording for `key` the value the machine had before any pkube user."""
        with self._locked():
            self._enable(key, value)

    def _enable(self, key: str, value: str) -> None:
        record = self.record(key)
        current = self.sysctl.read_text().strip()
        if not record.exists():
            if not record.parent.is_dir():
                record.parent.mkdir(parents=True)
                if record.parent != self.state_dir and (cookie := netns_cookie()) is not None:
                    (record.parent / COOKIE).write_text(cookie + "\n")
            # Another user may have changed it already: its record holds the original value, ours must too.
            others = {k: v for k, v in self.recorded().items() if k != key}
            original = next(iter(sorted(others.values())), current)
            tmp = record.with_name(record.name + ".tmp")
            tmp.write_text(original + "\n")
            os.replace(tmp, record)  # never a half-written record
        if current != value:
            self.sysctl.write_text(value + "\n")
            log.info("set %s=%s (was %s)", self.name, value, current)

    def restore(self, key: str, live_users: Callable[[], set[str]]) -> None:
        """Forget `key`'s record; put the original value back when no other user that changed it is live.

        `live_users` lists the users that are still there (e.g. the pkube proxy tables in nftables); it is only
        called when `key` has a record. A live user without a record never turned the setting on (a proxy
        that has not synced yet, a table a test made): it must not keep the machine changed, since nobody
        would restore it after the last record is gone.
        """
        with self._locked():
            self._restore(key, live_users)

    def _restore(self, key: str, live_users: Callable[[], set[str]]) -> None:
        record = self.record(key)
        try:
            original = record.read_text().strip()
        except FileNotFoundError:
            return  # this user never changed anything (or was restored already)
        record.unlink(missing_ok=True)
        if (live_users() - {key}) & self.recorded().keys():
            return
        # No user is left: any other record belongs to one that went away without cleaning up.
        for stale in record.parent.glob(f"*.{self.name}"):
            stale.unlink(missing_ok=True)
        if record.parent != self.state_dir and not any(p.name != COOKIE for p in record.parent.iterdir()):
            shutil.rmtree(record.parent, ignore_errors=True)  # the netns' last record is gone
        if original in ("0", "1") and self.sysctl.read_text().strip() != original:
            self.sysctl.write_text(original + "\n")
            log.info("restored %s=%s", self.name, original)
