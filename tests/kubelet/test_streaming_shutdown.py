"""Proxied streams at apiserver shutdown (issue 17): `logs -f` ends with the end of its body, exec gets a status
frame saying why and a normal WebSocket close (kubectl then reports the status: a 1001 close would make it fail
reading the error stream instead), port-forward a close frame (1001 going away); pkctl and kubectl `logs -f` and
`exec` exit alike.

The apiserver sent SIGTERM is a second one of the node's control plane (same etcd prefix, same kubelet client
certificate): the session's own apiserver keeps serving the other tests."""
from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
from typing import AsyncIterator, Iterator

import aiohttp
import pytest

from pklib.client import Client
from pklib.resources import lookup
from tests.support.controlplane import ROOT, ApiServer, Etcd, _stop, ca_context, etcd_prefix, start_apiserver
from tests.support.kubectl import Kubectl, Stream
from tests.support.node import Node, ctr, exec_in, pod, running, wait_pod
from tests.support.portforward import start_web
from tests.util import wait_for

pytestmark = pytest.mark.root

PODS = lookup("pods")
assert PODS
STATUS, STDOUT = 3, 1


@pytest.fixture
def second(node: Node, etcd: Etcd) -> Iterator[ApiServer]:
    a = start_apiserver(str(node.tmp), etcd.url, tls=True, extra=["--etcd-prefix", etcd_prefix(node.api)])
    yield a
    _stop(a.proc)


@pytest.fixture
async def session(node: Node, second: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {second.token}"},
                                     connector=aiohttp.TCPConnector(ssl=ca_context(str(node.tmp)))) as s:
        yield s


async def test_logs_exec_and_port_forward_end_cleanly_when_the_apiserver_stops(
        node: Node, kc: Client, ns: str, second: ApiServer, session: aiohttp.ClientSession) -> None:
    script = "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.2; done"
    await kc.create(PODS, pod("chatty", ctr("c", script)), ns)
    web = await start_web(kc, ns, "web")

    # Running is not yet listening: the port-forward below dials port 80 at once, and a refused dial would be an
    # error frame instead of the idle connection this test stops the apiserver under.
    async def listening() -> bool:
        fetched = await exec_in(node, web, "web", ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:80/"])
        return fetched.exit_code == 0
    await wait_for(listening, 20, 0.1, message="web's httpd listening on port 80")
    await wait_pod(kc, ns, "chatty", running, what="chatty Running")
    base = f"{second.url}/api/v1/namespaces/{ns}/pods/chatty"

    # port-forward (v4 channels): the port's data and error channels open, the connection to the pod stays idle
    forward = await session.ws_connect(f"{second.url}/api/v1/namespaces/{ns}/pods/web/portforward",
                                       protocols=("v4.channel.k8s.io",), params={"ports": "80"})
    opened = [(await asyncio.wait_for(forward.receive(), 20)).data for _ in range(2)]
    assert opened == [bytes([0, 80, 0]), bytes([1, 80, 0])], opened

    ws = await session.ws_connect(f"{base}/exec", protocols=("v5.channel.k8s.io",),
                                  params=[("command", "sh"), ("command", "-c"),
                                          ("command", "echo ready; exec sleep 3600"), ("stdout", "true")])
    msg = await asyncio.wait_for(ws.receive(), 20)
    assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == bytes([STDOUT]) + b"ready\n", msg
    logs = await session.get(f"{base}/log", params={"follow": "true"}, timeout=aiohttp.ClientTimeout(total=None))
    assert (await asyncio.wait_for(logs.content.readline(), 20)).startswith(b"line-")

    followers = [Stream(subprocess.Popen([sys.executable, "-m", "pkctl.main", "--kubeconfig", second.kubeconfig,
                                          "-n", ns, "logs", "-f", "chatty"], cwd=ROOT, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))]
    if shutil.which("kubectl"):
        followers.append(Kubectl(second.kubeconfig).stream("-n", ns, "logs", "-f", "chatty"))
    execs = [Stream(subprocess.Popen([sys.executable, "-m", "pkctl.main", "--kubeconfig", second.kubeconfig,
                                      "-n", ns, "exec", "chatty", "--", "sh", "-c", "echo in; exec sleep 3600"],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))]
    if shutil.which("kubectl"):
        execs.append(Kubectl(second.kubeconfig).stream("-n", ns, "exec", "chatty", "--", "sh", "-c",
                                                        "echo in; exec sleep 3600"))
    try:
        for f in followers:
            f.wait_line(lambda line: line.startswith("line-"))
        for e in execs:
            e.wait_line(lambda line: line == "in")

        second.proc.send_signal(signal.SIGTERM)

        # exec (raw): why it ended (the command goes on in the pod), then a close frame
        msgs = []
        while (msg := await asyncio.wait_for(ws.receive(), 10)).type == aiohttp.WSMsgType.BINARY:
            msgs.append(msg.data)
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == aiohttp.WSCloseCode.OK, msg
        assert msgs and msgs[-1][0] == STATUS, msgs
        status = json.loads(msgs[-1][1:])
        assert (status["status"], status["reason"]) == ("Failure", "ServiceUnavailable"), status
        assert "shutting down" in status["message"]

        # port-forward: a close frame
        msg = await asyncio.wait_for(forward.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and forward.close_code == aiohttp.WSCloseCode.GOING_AWAY, msg

        # logs -f: the body ends (no ClientPayloadError: the chunked encoding is terminated)
        await asyncio.wait_for(logs.content.read(), 10)
        assert logs.content.at_eof()
        logs.release()

        codes = [await asyncio.to_thread(f.proc.wait, 15) for f in followers]
        assert codes[0] == 0 and len(set(codes)) == 1, codes  # pkctl's exit code is kubectl's
        for f in followers:
            assert f.proc.stderr is not None and "Traceback" not in f.proc.stderr.read()
        assert await asyncio.to_thread(second.proc.wait, 15) == 0
        # exec: pkctl and kubectl both report the status frame
        ends = [(await asyncio.to_thread(e.proc.wait, 15), e.proc.stderr.read() if e.proc.stderr else "")
                for e in execs]
        assert ends[0] == (1, "error: the apiserver is shutting down\n") and len(set(ends)) == 1, ends
    finally:
        await ws.close()
        await forward.close()
        for f in [*followers, *execs]:
            f.close()
