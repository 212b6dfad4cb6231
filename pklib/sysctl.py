"""Host sysctls that pkube components turn on and give back: set while needed, restored by the last user.

Several pkube users (the proxy tables and kubelet bridges of local clusters and tests) may share one
machine. Each user that turns a setting on writes a small record, `<state_dir>/<key>.<name>`, holding the
value the machine had before any pkube user changed it (later users copy it from an earlier record). The
state directory is under /run (tmpfs): a reboot resets the sysctls too. Restoring forgets one user's
record and puts the original value back only when no other user is still live; records of users that
went away without cleaning up are dropped then. Both take an flock on the state directory, so a user starting
while the last one restores cannot record the value that is about to be given back.
"""
from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("sysctl")

RUN_DIR = Path("/run/pkube")


@dataclass(frozen=True)
class SharedSysctl:
    sysctl: Path  # e.g. /proc/sys/net/ipv4/ip_forward
    state_dir: Path  # where the records live
    name: str  # the records' suffix and the name in log lines, e.g. "ip_forward"

    def _record(self, key: str) -> Path:
        return self.state_dir / f"{key}.{self.name}"

    def recorded(self) -> dict[str, str]:
        """User key -> the original value its record holds."""
        suffix = f".{self.name}"
        out = {}
        for path in self.state_dir.glob(f"*{suffix}") if self.state_dir.is_dir() else ():
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
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def enable(self, key: str, value: str = "1") -> None:
        """Set the sysctl to `value`, first recording for `key` the value the machine had before any pkube user."""
        with self._locked():
            self._enable(key, value)

    def _enable(self, key: str, value: str) -> None:
        record = self._record(key)
        current = self.sysctl.read_text().strip()
        if not record.exists():
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
        record = self._record(key)
        try:
            original = record.read_text().strip()
        except FileNotFoundError:
            return  # this user never changed anything (or was restored already)
        record.unlink(missing_ok=True)
        if (live_users() - {key}) & self.recorded().keys():
            return
        # No user is left: any other record belongs to one that went away without cleaning up.
        for stale in self.state_dir.glob(f"*.{self.name}"):
            stale.unlink(missing_ok=True)
        if original in ("0", "1") and self.sysctl.read_text().strip() != original:
            self.sysctl.write_text(original + "\n")
            log.info("restored %s=%s", self.name, original)
