"""Long life with real etcd: compaction, defragmentation and the NOSPACE alarm (apiserver/etcdmaintenance.py).

Each test has an etcd of its own: compaction is global to an etcd, so it must not touch the session's.
"""
from __future__ import annotations

import base64
import tempfile
import time
import urllib.request
from typing import Any, AsyncIterator

import pytest

from pkctl.cluster.etcdstatus import etcd_lines
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CONFIGMAPS
from tests.support.controlplane import ApiServer, Etcd, _stop, etcd_call, etcd_prefix, start_apiserver, start_etcd
from tests.util import unique, wait_for

MiB = 2**20


@pytest.fixture
def own_tmp(session_tmp: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="pkt-", dir=session_tmp) as tmp:
        yield tmp


def _status(etcd: Etcd) -> dict[str, int]:
    st = etcd_call(etcd.url, "/v3/maintenance/status", {})
    return {"dbSize": int(st["dbSize"]), "dbSizeInUse": int(st["dbSizeInUse"])}


def _alarms(etcd: Etcd) -> list[dict[str, Any]]:
    return etcd_call(etcd.url, "/v3/maintenance/alarm", {"action": "GET"}).get("alarms") or []


def _metric(server: ApiServer, name: str) -> float:
    req = urllib.request.Request(server.url + "/metrics", headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def _cm(name: str, size: int, n: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"blob": f"{n:08d}" + "x" * size}}


async def _expired(c: Client, rv: str) -> bool:
    """True once a watch from `rv` is answered 410 Expired (the revision was compacted away)."""
    try:
        async for _ in c.watch(CONFIGMAPS, "default", resource_version=rv, timeout_seconds=1):
            return False
        return False
    except ApiError as e:
        assert e.code == 410 and e.reason == "Expired", e
        return True


@pytest.fixture
async def churned(own_tmp: str) -> AsyncIterator[tuple[Etcd, ApiServer, Client, str]]:
    etcd = start_etcd(own_tmp)
    server = start_apiserver(own_tmp, etcd.url, ["--etcd-compaction-interval", "1s", "--etcd-defrag-threshold", "1Mi"])
    try:
        async with Client(server.url, server.token) as c:
            yield etcd, server, c, own_tmp
    finally:
        _stop(server.proc)
        _stop(etcd.proc)


async def test_compaction_expires_old_revisions_and_keeps_the_db_small(churned: Any) -> None:
    etcd, server, c, _ = churned
    name = unique("churn")
    first = await c.create(CONFIGMAPS, _cm(name, 100_000, 0), "default")
    old_rv = first["metadata"]["resourceVersion"]
    obj = first
    for n in range(1, 121):  # 12 MB of history for one object
        obj = await c.update(CONFIGMAPS, dict(_cm(name, 100_000, n), metadata=obj["metadata"]))
    # A revision from before the churn is compacted away within two intervals: a watch from it gets 410.
    await wait_for(lambda: _expired(c, old_rv), timeout=20, message="a watch from the old revision to expire")
    # The history is gone from etcd, and its file was given back by a defragmentation.
    await wait_for(lambda: _async(_status(etcd)["dbSize"] < 4 * MiB), timeout=20,
                   message=f"etcd's file to shrink below 4 MiB (now {_status(etcd)})")
    assert _status(etcd)["dbSizeInUse"] < 2 * MiB
    assert _metric(server, "pkube_etcd_compactions_total") >= 1
    # The object itself is intact, and a recent resourceVersion still watches fine.
    assert (await c.get(CONFIGMAPS, name, "default"))["data"]["blob"].startswith("00000120")
    fresh = await c.create(CONFIGMAPS, _cm(unique("fresh"), 10, 0), "default")
    assert not await _expired(c, fresh["metadata"]["resourceVersion"])


async def test_one_compaction_per_interval_with_two_apiservers(churned: Any) -> None:
    etcd, server, c, tmp = churned
    second = start_apiserver(tmp, etcd.url, ["--etcd-compaction-interval", "1s"])
    try:
        def compactions() -> float:
            return (_metric(server, "pkube_etcd_compactions_total")
                    + _metric(second, "pkube_etcd_compactions_total"))
        await wait_for(lambda: _async(_compact_clock(etcd) >= 2), timeout=10, message="both to tick")
        clock, done, began = _compact_clock(etcd), compactions(), time.monotonic()
        await wait_for(lambda: _async(_compact_clock(etcd) >= clock + 6), timeout=30, message="six more ticks")
        elapsed, made = time.monotonic() - began, compactions() - done
        # Both apiservers tick every second; the shared clock lets only one of them compact per interval (without
        # it, the six ticks would come twice as fast and each would compact).
        assert 1 <= made <= elapsed / 1.0 + 1, (made, elapsed)
        assert elapsed >= 4.5, elapsed
    finally:
        _stop(second.proc)


def _compact_clock(etcd: Etcd) -> int:
    found = etcd_call(etcd.url, "/v3/kv/range", {"key": base64.b64encode(b"compact_rev_key").decode()})
    kvs = found.get("kvs") or []
    return int(kvs[0].get("version", 0)) if kvs else 0


async def _async(value: bool) -> bool:
    return value


async def _write_fails_for_space(c: Client, name: str, n: int) -> str | None:
    try:
        await c.create(CONFIGMAPS, _cm(f"{name}-{n}", 1_000_000, n), "default")
        return None
    except ApiError as e:
        assert e.code == 503, e
        return e.message


async def test_nospace_alarm_is_reported_and_recovered(own_tmp: str) -> None:
    etcd = start_etcd(own_tmp, quota_bytes=12 * MiB)
    try:
        # Without maintenance (compaction off) the quota is reached and etcd raises its NOSPACE alarm.
        filler = start_apiserver(own_tmp, etcd.url, ["--etcd-compaction-interval", "0"])
        name = unique("fill")
        try:
            async with Client(filler.url, filler.token) as c:
                message = None
                for n in range(40):
                    message = await _write_fails_for_space(c, name, n)
                    if message:
                        break
                    await c.delete(CONFIGMAPS, f"{name}-{n}", "default")  # what stays is history only
                assert message and "NOSPACE" in message, message
        finally:
            _stop(filler.proc)
        assert [a["alarm"] for a in _alarms(etcd)] == ["NOSPACE"]
        # An apiserver starting meanwhile (its default objects cannot be written) still comes up and serves reads.
        fresh = start_apiserver(own_tmp, etcd.url, ["--etcd-compaction-interval", "0"])
        try:
            async with Client(fresh.url, fresh.token) as c:
                assert (await c.list(CONFIGMAPS, "default"))["items"] == []
        finally:
            _stop(fresh.proc)
        lines = etcd_lines([etcd.url], None)
        assert any(line.startswith("ALARM NOSPACE on etcd " + etcd.url) for line in lines), lines
        assert any("--quota-backend-bytes" in line for line in lines), lines

        # An apiserver with maintenance (restarted on the same data) compacts, defragments and disarms: writes
        # work again.
        server = start_apiserver(own_tmp, etcd.url, ["--etcd-compaction-interval", "1s",
                                                     "--etcd-prefix", etcd_prefix(filler)])
        try:
            async with Client(server.url, server.token) as c:
                await wait_for(lambda: _created(c, unique("after")), timeout=30, message="a write after recovery")
            assert _alarms(etcd) == []
            assert _status(etcd)["dbSize"] < 6 * MiB
            assert _metric(server, "pkube_etcd_nospace_recoveries_total") >= 1
            assert not any(line.startswith("ALARM") for line in etcd_lines([etcd.url], None))
        finally:
            _stop(server.proc)
    finally:
        _stop(etcd.proc)


async def _created(c: Client, name: str) -> bool:
    try:
        await c.create(CONFIGMAPS, _cm(name, 10, 0), "default")
        return True
    except ApiError as e:
        assert e.code == 503, e
        return False
