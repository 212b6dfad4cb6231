"""What `cluster status` says about etcd: each member's file size against what its data uses, and alarms.

Read through etcd's JSON gateway (`/v3/maintenance/status`, `/v3/maintenance/alarm`) with the
health-check client certificate. A NOSPACE alarm means etcd refuses every write; the apiserver recovers
from it by itself (compact, defragment, disarm) at its next maintenance tick, and if the data really does
not fit the alarm comes back: then objects must go, or etcd needs a larger --quota-backend-bytes.

The filesystem of etcd's data dir filling up is another matter: etcd raises no alarm, the first write that
finds no room ends the process ("cannot commit tx ... no space left on device") and every restart dies the
same way; the apiserver answers 503 meanwhile. `cluster status` says so when less than one WAL file (etcd
preallocates each to 64 MB) is free there; once space is freed the supervisor's next restart of etcd brings
the cluster back, with every acknowledged write.
"""
from __future__ import annotations

import json
import os
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

NOSPACE_ADVICE = ("etcd is out of space and refuses writes. The apiserver compacts, defragments and disarms "
                  "the alarm at its next etcd maintenance (--etcd-compaction-interval, 5m); if it comes back, "
                  "delete objects you do not need (old Events, terminated Pods) or raise etcd's "
                  "--quota-backend-bytes, then run `pkctl cluster status` again.")

WAL_FILE_BYTES = 64 * 1000 * 1000  # etcd's wal.SegmentSizeBytes: each WAL file is preallocated to it


def disk_free(path: Path) -> tuple[int, int] | None:
    """(bytes free for non-root users, as `df` shows them; filesystem size) of `path`'s filesystem."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None  # no data dir yet
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def disk_lines(path: Path, free: int, size: int, human_bytes: Callable[[int], str]) -> list[str]:
    """A DISK FULL line when etcd's data dir has less room than one WAL file (etcd is about to stop or stopped)."""
    if free >= WAL_FILE_BYTES:
        return []
    return [f"DISK FULL: {human_bytes(free)} free of {human_bytes(size)} on the filesystem of etcd's data dir {path}",
            "  etcd stops at the first write that finds no room (no space left on device) and every restart does "
            "the same: free space there (or move the cluster's home); the supervisor restarts etcd and the "
            "cluster comes back with every write it acknowledged."]


@dataclass(frozen=True)
class MemberReport:
    url: str
    db_size: int | None = None
    db_size_in_use: int | None = None
    member_id: str = ""
    error: str = ""


def _call(url: str, path: str, body: dict[str, Any], tls: ssl.SSLContext | None, timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout, context=tls) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def member_reports(urls: list[str], tls: ssl.SSLContext | None, timeout: float = 2.0) -> list[MemberReport]:
    reports = []
    for url in urls:
        try:
            st = _call(url, "/v3/maintenance/status", {}, tls, timeout)
            reports.append(MemberReport(url, int(st.get("dbSize") or 0), int(st.get("dbSizeInUse") or 0),
                                        str((st.get("header") or {}).get("member_id") or "")))
        except (OSError, ValueError) as e:
            reports.append(MemberReport(url, error=str(getattr(e, "reason", e))))
    return reports


def alarms(urls: list[str], tls: ssl.SSLContext | None, timeout: float = 2.0) -> list[tuple[str, str]] | None:
    """The raised alarms as (member id, NOSPACE|CORRUPT), from the first member that answers; None if none does."""
    for url in urls:
        try:
            found = _call(url, "/v3/maintenance/alarm", {"action": "GET"}, tls, timeout).get("alarms") or []
            return [(str(a.get("memberID") or ""), str(a.get("alarm") or "NOSPACE")) for a in found]
        except (OSError, ValueError):
            continue
    return None


def etcd_lines(urls: list[str], tls: ssl.SSLContext | None, human_bytes: Any = str) -> list[str]:
    """The lines `cluster status` prints about etcd."""
    reports = member_reports(urls, tls)
    lines = []
    for r in reports:
        if r.error:
            lines.append(f"etcd {r.url}: not answering ({r.error})")
        else:
            lines.append(f"etcd {r.url}: db {human_bytes(r.db_size)}, {human_bytes(r.db_size_in_use)} in use")
    raised = alarms(urls, tls) or []
    by_id = {r.member_id: r.url for r in reports if r.member_id}
    for member, alarm in raised:
        lines.append(f"ALARM {alarm} on etcd {by_id.get(member, member)}")
    if any(alarm == "NOSPACE" for _, alarm in raised):
        lines.append("  " + NOSPACE_ADVICE)
    return lines
