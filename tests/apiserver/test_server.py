"""The apiserver process: flags, etcd endpoints, behaviour while etcd is down."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import pytest

from apiserver.main import parse_args
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.samples import sample
from tests.support.controlplane import ROOT, Etcd, _stop, start_apiserver, start_etcd
from tests.util import free_port, wait_for

CM = lookup("configmaps")


@pytest.mark.parametrize("flags,message", [
    (["--service-cluster-ip-range", "10.96.0.0/99"], "--service-cluster-ip-range"),
    (["--service-node-port-range", "40000-30000"], "--service-node-port-range"),
    (["--token-auth-file", "/nonexistent/tokens.csv"], "cannot read token file"),
    (["--etcd-prefix", "relative"], "--etcd-prefix must start with /"),
    (["--etcd-servers", "https://127.0.0.1:2379"], "is https: give etcd's CA with --etcd-cafile"),
    (["--etcd-servers", "unix:///run/etcd.sock"], "is not an http(s)://host:port URL"),
    (["--etcd-certfile", "/etc/hostname"], "--etcd-certfile and --etcd-keyfile must be given together"),
    (["--etcd-servers", "https://127.0.0.1:2379", "--etcd-cafile", "/nonexistent/ca.crt"],
     "--etcd-cafile: cannot read /nonexistent/ca.crt"),
    (["--kubelet-client-certificate", "/etc/hostname"], "--kubelet-client-certificate and --kubelet-client-key"),
    (["--kubelet-certificate-authority", "/nonexistent/ca.crt"], "cannot read /nonexistent/ca.crt"),
    (["--etcd-servers", " , "], "at least one URL"),
    (["--bind-address", "0.0.0.0"], "not a loopback address and no authentication is configured"),
    (["--bind-address", "::"], "set --token-auth-file, or bind to 127.0.0.1"),
])
def test_bad_flags_are_rejected(flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(flags)
    assert e.value.code != 0 and message in capsys.readouterr().err


def test_bad_flag_exits_with_one_line_and_no_traceback() -> None:
    r = subprocess.run([sys.executable, "-m", "launcher", "apiserver", "--port", str(free_port()),
                        "--service-node-port-range", "abc"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--service-node-port-range" in r.stderr and "Traceback" not in r.stderr


def test_refuses_to_serve_every_address_without_authentication() -> None:
    """Issue 13: without --token-auth-file anyone who reaches the port is admin, so only loopback may serve that."""
    r = subprocess.run([sys.executable, "-m", "launcher", "apiserver", "--bind-address", "0.0.0.0",
                        "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "pkube apiserver: error: --bind-address '0.0.0.0' is not a loopback address and no authentication is "
        "configured: set --token-auth-file, or bind to 127.0.0.1")
    for loopback in ("127.0.0.1", "::1", "localhost"):
        parse_args(["--bind-address", loopback])  # the unauthenticated loopback port stays


async def test_serves_every_address_with_token_authentication(session_tmp: str, etcd: Etcd) -> None:
    a = start_apiserver(session_tmp, etcd.url, ["--bind-address", "0.0.0.0"])  # with its token file
    try:
        async with Client(a.url, a.token) as c:
            assert (await c.list(CM, "default"))["items"] == []
        async with Client(a.url, "wrong") as c:
            with pytest.raises(ApiError) as e:
                await c.list(CM, "default")
            assert e.value.code == 401
    finally:
        _stop(a.proc)


async def test_second_etcd_endpoint_is_used_when_the_first_is_down(session_tmp: str, etcd: Etcd) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = start_apiserver(session_tmp, f"{dead},{etcd.url}")
    try:
        async with Client(server.url, server.token) as c:
            created = await c.create(CM, sample(CM, "ha", "default"))
            assert (await c.get(CM, "ha", "default"))["metadata"]["uid"] == created["metadata"]["uid"]
    finally:
        _stop(server.proc)


def _status(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def test_etcd_outage_503_then_recovery_keeps_watches(session_tmp: str) -> None:
    with tempfile.TemporaryDirectory(prefix="pkt-", dir=session_tmp) as tmp:
        own = start_etcd(tmp)
        restarted: subprocess.Popen[bytes] | None = None
        try:
            server = start_apiserver(tmp, own.url)
            try:
                async with Client(server.url, server.token) as c:
                    await c.create(CM, sample(CM, "before", "default"))
                    events: asyncio.Queue[dict] = asyncio.Queue()

                    async def watch() -> None:
                        async for ev in c.watch(CM, "default"):
                            await events.put(ev)

                    watching = asyncio.create_task(watch())
                    first = await asyncio.wait_for(events.get(), 10)  # the watch is established
                    assert first["object"]["metadata"]["name"] == "before"
                    _stop(own.proc)
                    assert await wait_for(lambda: _async(_status(server.url + "/readyz", server.token) == 503),
                                          timeout=15, message="readyz to fail")
                    with pytest.raises(ApiError) as e:
                        await c.get(CM, "before", "default")
                    assert e.value.code == 503 and e.value.reason == "ServiceUnavailable"
                    assert _status(server.url + "/livez", server.token) == 200  # alive, just not ready

                    # etcd comes back (same data): the server recovers and the open watch goes on.
                    restarted = subprocess.Popen(own.proc.args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                    assert await wait_for(lambda: _async(_status(server.url + "/readyz", server.token) == 200),
                                          timeout=20, message="readyz to recover")
                    await wait_for(lambda: _created(c), timeout=20, message="a create after recovery")
                    ev = await asyncio.wait_for(events.get(), 10)
                    assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "after")
                    assert not watching.done()
                    watching.cancel()
                assert server.proc.poll() is None
            finally:
                _stop(server.proc)
        finally:
            _stop(own.proc)
            if restarted is not None:
                _stop(restarted)


async def _created(c: Client) -> bool:
    try:
        await c.create(CM, sample(CM, "after", "default"))
        return True
    except ApiError as e:
        return e.code == 409  # a retried create that had gone through


async def _async(value: bool) -> bool:
    return value


async def test_two_api_servers_on_one_prefix_see_each_others_writes(session_tmp: str, etcd: Etcd, apiserver,
                                                                     client: Client, namespace: str) -> None:
    args = list(apiserver.proc.args)
    prefix = args[args.index("--etcd-prefix") + 1]
    second = start_apiserver(session_tmp, etcd.url, ["--etcd-prefix", prefix])  # the later flag wins
    try:
        async with Client(second.url, second.token) as other:
            rv = (await other.list(CM, namespace))["metadata"]["resourceVersion"]

            async def first_event() -> dict:
                async for ev in other.watch(CM, namespace, resource_version=rv):
                    return ev
                raise AssertionError("watch ended")

            watching = asyncio.create_task(first_event())
            created = await client.create(CM, sample(CM, "via-first", namespace))
            # A consistent list right after the write, on the other server, already has it.
            listed = await other.list(CM, namespace)
            assert [i["metadata"]["name"] for i in listed["items"]] == ["via-first"]
            event = await asyncio.wait_for(watching, 10)
            assert event["type"] == "ADDED"
            assert event["object"]["metadata"]["uid"] == created["metadata"]["uid"]
    finally:
        _stop(second.proc)
