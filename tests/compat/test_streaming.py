"""Logs and exec with the real kubectl and the official Python client, through a TLS apiserver to a real kubelet.

The private control plane + kubelet of the kubelet tests (tests/kubelet/conftest.py private_node), with the
apiserver serving HTTPS: kubectl sends its token only over TLS. Pods run busybox in runc.
"""
from __future__ import annotations

import asyncio
import os
import pty
import shutil
import subprocess
from typing import Any, AsyncIterator, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.stream import stream

from pklib.client import Client
from tests.compat.conftest import Kubectl
from tests.conftest import Etcd
from tests.kubelet.conftest import (NAMESPACES, PODS, Node, clean_namespace, cstatus, ctr, pod, private_node, running,
                                    wait_pod)
from tests.util import unique

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def tls_node(etcd: Etcd) -> Iterator[Node]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: the compatibility suite needs the real kubectl v1.32 on PATH")
    with private_node(etcd, tls=True) as n:
        yield n


@pytest.fixture(scope="module")
def kctl(tls_node: Node) -> Kubectl:
    return Kubectl(tls_node.api.kubeconfig)


@pytest.fixture
async def kc(tls_node: Node) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(tls_node.api.kubeconfig)
    yield c
    await c.close()


@pytest.fixture
async def sns(kc: Client) -> AsyncIterator[str]:
    name = unique("st")
    await kc.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    await clean_namespace(kc, name)


@pytest.fixture
def py(tls_node: Node) -> Iterator[k8s.CoreV1Api]:
    api = config.new_client_from_config(config_file=tls_node.api.kubeconfig)
    yield k8s.CoreV1Api(api)
    api.close()


async def _running(kc: Client, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    name = manifest["metadata"]["name"]
    await kc.create(PODS, manifest, ns)
    return await wait_pod(kc, ns, name, running, what=f"{name} Running")


async def _logs_contain(kctl: Kubectl, ns: str, *args: str, want: str) -> str:
    """kubectl logs until `want` shows up (the container may not have written it yet when it became Running)."""
    out = ""
    for _ in range(100):
        out = kctl("logs", "-n", ns, *args).stdout
        if want in out:
            return out
        await asyncio.sleep(0.1)
    raise AssertionError(f"kubectl logs {args} never showed {want!r}; last output: {out!r}")


async def test_kubectl_logs_and_container_choice(tls_node: Node, kctl: Kubectl, kc: Client, sns: str) -> None:
    await _running(kc, sns, pod("two", ctr("a", "echo i-am-a; exec sleep 3600"),
                                ctr("b", "echo i-am-b; echo second-b; exec sleep 3600")))
    assert (await _logs_contain(kctl, sns, "two", "-c", "b", want="second-b")) == "i-am-b\nsecond-b\n"
    assert (await _logs_contain(kctl, sns, "two", "-c", "a", want="i-am-a")) == "i-am-a\n"
    # without -c kubectl picks the first container and says so on stderr, like against Kubernetes
    r = kctl("logs", "-n", sns, "two")
    assert r.stdout == "i-am-a\n" and 'Defaulted container "a"' in r.stderr
    assert kctl("logs", "-n", sns, "two", "-c", "b", "--tail", "1").stdout == "second-b\n"
    r = kctl("logs", "-n", sns, "two", "-c", "nope", ok=False)
    assert r.returncode == 1 and "container nope is not valid for pod two" in r.stderr
    r = kctl("logs", "-n", sns, "ghost", ok=False)  # kubectl's own wording for logs, as against Kubernetes
    assert r.returncode == 1 and r.stderr.strip() == \
        f'error: error from server (NotFound): pods "ghost" not found in namespace "{sns}"'


async def test_kubectl_logs_follow(tls_node: Node, kctl: Kubectl, kc: Client, sns: str) -> None:
    await _running(kc, sns, pod("talker", ctr("c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); "
                                                   "sleep 0.2; done; exec sleep 3600")))
    follower = kctl.stream("logs", "-f", "-n", sns, "talker")
    try:
        follower.wait_line(lambda line: line == "line-12", timeout=30)
        # every line in order, including those written after kubectl started following
        assert follower.seen == [f"line-{i}" for i in range(13)]
        assert follower.proc.poll() is None  # still following
    finally:
        follower.close()


async def test_kubectl_logs_previous(tls_node: Node, kctl: Kubectl, kc: Client, sns: str) -> None:
    # the first run writes run-1 and fails; the restarted container writes run-2 and stays up
    script = ("n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo run-$n; "
              "[ $n -ge 2 ] || exit 1; exec sleep 3600")
    manifest = pod("phoenix", ctr("c", script, volumeMounts=[{"name": "d", "mountPath": "/d"}]),
                   volumes=[{"name": "d", "emptyDir": {}}])
    await kc.create(PODS, manifest, sns)
    await wait_pod(kc, sns, "phoenix", lambda p: running(p) and cstatus(p, "c").get("restartCount") == 1,
                   timeout=60, what="phoenix restarted once and Running")
    assert kctl("logs", "-n", sns, "phoenix", "--previous").stdout == "run-1\n"
    assert (await _logs_contain(kctl, sns, "phoenix", want="run-2")) == "run-2\n"
    r = kctl("logs", "-n", sns, "phoenix", "-p", "-c", "c", "--tail", "0")
    assert r.stdout == ""


async def test_kubectl_exec_output_exit_code_and_stdin(tls_node: Node, kctl: Kubectl, kc: Client, sns: str) -> None:
    await _running(kc, sns, pod("box", ctr("c", "exec sleep 3600")))
    r = kctl("exec", "-n", sns, "box", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3", ok=False)
    assert (r.returncode, r.stdout) == (3, "hi\n") and "oops" in r.stderr
    r = kctl("exec", "-n", sns, "box", "--", "cat", "/etc/hostname")
    assert r.stdout.strip() == "box"
    r = kctl("exec", "-i", "-n", sns, "box", "--", "tr", "a-z", "A-Z", stdin="shout\nagain\n")
    assert r.stdout == "SHOUT\nAGAIN\n"
    r = kctl("exec", "-n", sns, "ghost", "--", "true", ok=False)
    assert r.returncode == 1 and r.stderr.strip() == 'Error from server (NotFound): pods "ghost" not found'
    # `exec -it` from a real terminal: refused with a clear error (exec is buffered), never a hang
    master, slave = pty.openpty()
    proc = subprocess.Popen(["kubectl", "--kubeconfig", kctl.kubeconfig, "exec", "-it", "-n", sns, "box", "--",
                             "sh"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        code = await asyncio.to_thread(proc.wait, 30)
        seen = await asyncio.to_thread(_read_all, master)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert code == 1 and "interactive exec (stdin with a TTY) is not supported" in seen, (code, seen)


def _read_all(fd: int) -> str:
    """A pty master's output until its slave side is closed (EIO)."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


async def test_python_client_logs_and_exec(tls_node: Node, py: k8s.CoreV1Api, kc: Client, sns: str) -> None:
    await _running(kc, sns, pod("pybox", ctr("c", "echo hello-py; echo bye-py; exec sleep 3600")))
    text = ""
    for _ in range(100):
        text = await asyncio.to_thread(py.read_namespaced_pod_log, "pybox", sns)
        if "bye-py" in text:
            break
        await asyncio.sleep(0.1)
    assert text == "hello-py\nbye-py\n"
    assert await asyncio.to_thread(py.read_namespaced_pod_log, "pybox", sns, tail_lines=1) == "bye-py\n"

    def run_exec(cmd: list[str]) -> tuple[str, str, int | None]:
        ws = stream(py.connect_get_namespaced_pod_exec, "pybox", sns, command=cmd, stdin=False, stdout=True,
                    stderr=True, tty=False, _preload_content=False)
        ws.run_forever(timeout=20)
        out, err = ws.read_stdout(), ws.read_stderr()
        code = ws.returncode  # parsed from the error channel's Status
        ws.close()
        return out, err, code

    assert await asyncio.to_thread(run_exec, ["sh", "-c", "echo from-exec; echo warn >&2; exit 5"]) == \
        ("from-exec\n", "warn\n", 5)
    assert await asyncio.to_thread(run_exec, ["echo", "fine"]) == ("fine\n", "", 0)
    # the preloaded form returns the output as one string
    out = await asyncio.to_thread(stream, py.connect_get_namespaced_pod_exec, "pybox", sns,
                                  command=["echo", "preloaded"], stdin=False, stdout=True, stderr=True, tty=False)
    assert out == "preloaded\n"


async def test_python_client_exec_with_tty(tls_node: Node, py: k8s.CoreV1Api, kc: Client, sns: str) -> None:
    await _running(kc, sns, pod("ttybox", ctr("c", "exec sleep 3600")))

    def run_tty() -> tuple[str, int | None]:
        ws = stream(py.connect_get_namespaced_pod_exec, "ttybox", sns, stdin=False, stdout=True, stderr=True,
                    tty=True, _preload_content=False,
                    command=["sh", "-c", "test -t 1 && echo stdout-is-a-tty; echo err >&2; exit 4"])
        ws.run_forever(timeout=20)
        out, code = ws.read_stdout(), ws.returncode
        ws.close()
        return out, code

    # a terminal: the command sees one, stderr comes through it, the line discipline turns \n into \r\n
    assert await asyncio.to_thread(run_tty) == ("stdout-is-a-tty\r\nerr\r\n", 4)
