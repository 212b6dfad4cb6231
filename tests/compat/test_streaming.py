"""Logs and exec with the real kubectl and the official Python client, through a TLS apiserver to a real kubelet.

The private control plane + kubelet of the kubelet tests (tests/support/node.py private_node), with the
apiserver serving HTTPS: kubectl sends its token only over TLS. Pods run busybox in runc.
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
from typing import Any, AsyncIterator, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.stream import stream

from pklib.client import Client
from pklib.errors import ApiError
from tests.support.controlplane import ROOT, Etcd
from tests.support.kubectl import Kubectl, Stream
from tests.support.node import (BUSYBOX, PODS, Node, pod_namespace, cstatus, ctr, pod, private_node, running,
                                    wait_pod)
from tests.util import wait_for, wait_for_sync

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
    async with pod_namespace(kc, "st") as name:
        yield name


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


async def test_kubectl_exec_streams_output_before_stdin_arrives(tls_node: Node, kctl: Kubectl, kc: Client,
                                                                 sns: str) -> None:
    await _running(kc, sns, pod("chat", ctr("c", "exec sleep 3600")))
    proc = subprocess.Popen(["kubectl", "--kubeconfig", kctl.kubeconfig, "exec", "-i", "-n", sns, "chat", "--",
                             "sh", "-c", "echo first; read x; echo got-$x; echo second"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        # the command is blocked in `read` until we write: `first` can only show up if output is streamed
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert first == b"first\n"
        assert proc.poll() is None
        proc.stdin.write(b"hello\n")
        proc.stdin.flush()
        rest = await asyncio.wait_for(asyncio.to_thread(proc.stdout.read), 30)
        assert rest == b"got-hello\nsecond\n"
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        _stop(proc)


async def test_exec_command_ends_when_the_client_hangs_up(tls_node: Node, kctl: Kubectl, kc: Client,
                                                           sns: str) -> None:
    await _running(kc, sns, pod("hangup", ctr("c", "exec sleep 3600")))
    proc = subprocess.Popen(["kubectl", "--kubeconfig", kctl.kubeconfig, "exec", "-n", sns, "hangup", "--",
                             "sh", "-c", "echo started; exec sleep 4242"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30) == b"started\n"
        assert "sleep 4242" in kctl("exec", "-n", sns, "hangup", "--", "ps").stdout
    finally:
        _stop(proc)
    # nobody can see or feed the command any more: the kubelet ends it rather than leaving it behind

    async def gone() -> bool:
        return "sleep 4242" not in kctl("exec", "-n", sns, "hangup", "--", "ps").stdout
    await wait_for(gone, timeout=20, interval=0.3, message="the exec'd sleep to end after kubectl was killed")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class Terminal:
    """A client (`kubectl exec -it`, `pkctl exec -it`) on a real pty, as a user at a terminal runs it; the screen is
    read in a thread."""

    def __init__(self, argv: list[str], rows: int = 24, cols: int = 80) -> None:
        self.master, slave = pty.openpty()
        _set_size(slave, rows, cols)
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.screen = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.screen += chunk

    def text(self) -> str:
        with self._lock:
            return self.screen.decode(errors="replace")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        async def seen() -> re.Match[str] | None:
            return re.search(pattern, self.text())
        try:
            return await wait_for(seen, timeout=timeout, message=f"{pattern!r} on the terminal")
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen: {self.text()!r}") from None

    def resize(self, rows: int, cols: int) -> None:
        _set_size(self.master, rows, cols)  # the kernel sends SIGWINCH to kubectl, as a terminal emulator does

    def close(self) -> None:
        _stop(self.proc)
        self._reader.join(10)
        os.close(self.master)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.mark.parametrize("client", ["kubectl", "pkctl"])
async def test_exec_interactive_terminal(tls_node: Node, kctl: Kubectl, kc: Client, sns: str, client: str) -> None:
    await _running(kc, sns, pod("shell", ctr("c", "exec sleep 3600")))
    program = ["kubectl"] if client == "kubectl" else [sys.executable, "-m", "pkctl.main"]
    term = Terminal([*program, "--kubeconfig", kctl.kubeconfig, "exec", "-it", "-n", sns, "shell", "--", "sh"])
    try:
        await term.wait_for(r"/ # ")  # busybox sh's prompt: it runs on a terminal and waits for us
        term.type("echo $((6*7))\r")
        await term.wait_for(r"\r\n42\r\n")  # the answer, on its own line, while the shell keeps running
        assert term.proc.poll() is None
        term.type("stty size\r")
        await term.wait_for(r"\r\n24 80\r\n")  # kubectl passed the terminal's size on at start
        term.resize(40, 132)
        # a resize reaches the container's terminal; typed only once kubectl can have relayed it, so poll
        for _ in range(50):
            term.type("stty size\r")
            try:
                await term.wait_for(r"\r\n40 132\r\n", timeout=0.5)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"the resize never reached the pty: {term.text()!r}")
        term.type("exit 5\r")
        assert await asyncio.to_thread(term.proc.wait, 30) == 5
    finally:
        term.close()


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


async def test_kubectl_attach_to_the_main_containers_stdio(tls_node: Node, kctl: Kubectl, kc: Client,
                                                            sns: str) -> None:
    """kubectl / pkctl attach -i: the container's own output live and input sent to its stdin (conmon's attach socket);
    hanging up only detaches, a second client attaches again."""
    await _running(kc, sns, pod("echoer", ctr("c", "while read l; do echo got:$l; done", stdin=True)))
    for line, program in (("hello", ["kubectl"]), ("again", [sys.executable, "-m", "pkctl.main"])):
        proc = subprocess.Popen([*program, "--kubeconfig", kctl.kubeconfig, "attach", "-i", "-n", sns, "echoer",
                                 "-c", "c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT)
        attached = Stream(proc)

        async def send() -> None:
            # attach shows output from the moment it is attached: send until the echo comes back (a line may
            # arrive before the kubelet attached)
            assert proc.stdin is not None
            while proc.poll() is None:
                proc.stdin.write(f"{line}\n")
                proc.stdin.flush()
                await asyncio.sleep(0.3)
        sender = asyncio.create_task(send())
        try:
            await asyncio.to_thread(attached.wait_line, lambda out: out == f"got:{line}", 30)
        finally:
            sender.cancel()
            attached.close()
        p = await kc.get(PODS, "echoer", sns)
        assert running(p) and cstatus(p, "c").get("restartCount", 0) == 0
    r = kctl("attach", "-n", sns, "ghost", ok=False)
    assert r.returncode == 1 and 'pods "ghost" not found' in r.stderr


async def test_kubectl_run_it_attaches_to_the_main_containers_terminal(tls_node: Node, kctl: Kubectl, kc: Client,
                                                                       sns: str) -> None:
    """kubectl run -it: a pod with stdin, stdinOnce and tty, then pods/attach to it: an interactive shell there,
    its terminal resized to the client's; the shell's exit ends kubectl and the pod."""
    term = Terminal(["kubectl", "--kubeconfig", kctl.kubeconfig, "run", "tshell", "-it", "-n", sns,
                     f"--image={BUSYBOX}", "--image-pull-policy=IfNotPresent", "--restart=Never", "--", "sh"],
                    rows=30, cols=100)
    try:
        for _ in range(60):  # typed until the shell answers: keys sent before the kubelet attached are lost
            term.type("echo $((6*7)); stty size\r")
            try:
                await term.wait_for(r"\r\n42\r\n30 100\r\n", timeout=0.5)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"no answer from the attached shell: {term.text()!r}")
        term.type("exit\r")
        assert await asyncio.to_thread(term.proc.wait, 30) == 0
    finally:
        term.close()
    await wait_pod(kc, sns, "tshell", lambda p: p["status"].get("phase") == "Succeeded", what="tshell Succeeded")


def _ephemeral(p: dict[str, Any], name: str) -> dict[str, Any]:
    return next((s for s in (p.get("status") or {}).get("ephemeralContainerStatuses") or [] if s["name"] == name),
                {})


async def test_kubectl_debug_runs_an_ephemeral_container_in_the_pod(tls_node: Node, kctl: Kubectl, kc: Client,
                                                                     sns: str) -> None:
    """kubectl debug adds an ephemeral container through pods/ephemeralcontainers; the kubelet starts it in the
    running pod (its network, and with --target the target's processes) once, and reports its status."""
    await _running(kc, sns, pod("patient", ctr("app", "exec sleep 3600")))
    r = kctl("debug", "-n", sns, "patient", f"--image={BUSYBOX}", "--image-pull-policy=IfNotPresent", "-c", "dbg",
             "--target=app", "--profile=baseline", "--", "sh", "-c", "hostname; ps -o args")
    assert r.stdout.startswith('Targeting container "app".')
    done = await wait_pod(kc, sns, "patient", lambda p: "terminated" in _ephemeral(p, "dbg").get("state", {}),
                          timeout=30, what="the ephemeral container dbg to run and end")
    assert _ephemeral(done, "dbg")["state"]["terminated"]["exitCode"] == 0
    assert running(done) and cstatus(done, "app").get("restartCount", 0) == 0
    out = (await _logs_contain(kctl, sns, "patient", "-c", "dbg", want="sleep 3600")).splitlines()
    assert out[0] == "patient" and "sleep 3600" in out  # the pod's hostname; the target's process is visible

    # only additions, and no ports/probes/resources, as Kubernetes validates them
    spec = done["spec"]["ephemeralContainers"][0]
    bad = {"spec": {"ephemeralContainers": [spec, {"name": "web", "image": BUSYBOX,
                                                   "ports": [{"containerPort": 80}]}]}}
    with pytest.raises(ApiError) as e:
        await kc.patch(PODS, "patient", bad, sns, patch_type="strategic", subresource="ephemeralcontainers")
    assert e.value.code == 422 and \
        "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container" in e.value.message
    gone = {**done, "spec": {**done["spec"], "ephemeralContainers": []}}
    with pytest.raises(ApiError) as e:
        await kc.update(PODS, gone, "ephemeralcontainers")
    assert e.value.code == 422 and 'existing ephemeral containers "dbg" may not be removed' in e.value.message

    # kubectl debug -it: waits for the new ephemeral container to run, then attaches to its terminal
    term = Terminal(["kubectl", "--kubeconfig", kctl.kubeconfig, "debug", "-it", "-n", sns, "patient",
                     f"--image={BUSYBOX}", "--image-pull-policy=IfNotPresent", "-c", "shell", "--profile=baseline",
                     "--", "sh"])
    try:
        for _ in range(60):  # typed until the shell answers: keys sent before the kubelet attached are lost
            term.type("echo $((6*7))\r")
            try:
                await term.wait_for(r"\r\n42\r\n", timeout=0.5)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"no answer from the debug shell: {term.text()!r}")
        term.type("exit\r")
        assert await asyncio.to_thread(term.proc.wait, 30) == 0
    finally:
        term.close()
    await wait_pod(kc, sns, "patient", lambda p: "terminated" in _ephemeral(p, "shell").get("state", {}),
                   what="the debug shell to end")
    # a pod update keeps them as they are; a new pod cannot have any
    fresh = await kc.get(PODS, "patient", sns)
    await kc.update(PODS, {**fresh, "spec": {**fresh["spec"], "ephemeralContainers": []}})
    assert [c["name"] for c in (await kc.get(PODS, "patient", sns))["spec"]["ephemeralContainers"]] == ["dbg", "shell"]
    with pytest.raises(ApiError) as e:
        await kc.create(PODS, pod("early", ctr("app", "true"), ephemeralContainers=[{"name": "x", "image": BUSYBOX}]),
                        sns)
    assert e.value.code == 422 and "spec.ephemeralContainers: Forbidden: cannot be set on create" in e.value.message


async def test_kubectl_debug_copy_to_shares_processes(tls_node: Node, kctl: Kubectl, kc: Client, sns: str) -> None:
    """kubectl debug --copy-to creates a copy of the pod with a debug container added; with --share-processes all
    its containers are in one PID namespace (shareProcessNamespace), which the original's containers are not."""
    await _running(kc, sns, pod("orig", ctr("app", "exec sleep 3600"), ctr("side", "ps -o args; exec sleep 3601")))
    assert "sleep 3600" not in await _logs_contain(kctl, sns, "orig", "-c", "side", want="ps -o args")
    kctl("debug", "-n", sns, "orig", "--copy-to=orig-copy", f"--image={BUSYBOX}", "--image-pull-policy=IfNotPresent",
         "--share-processes", "-c", "dbg", "--", "sh", "-c",
         "until ps -o args | grep -q '^[s]leep 3600' && ps -o args | grep -q '^[s]leep 3601'; do sleep 0.1; done; "
         "ps -o args; exec sleep 3602")
    copy = await wait_pod(kc, sns, "orig-copy", running, what="the copy Running")
    assert copy["spec"]["shareProcessNamespace"] is True
    assert [c["name"] for c in copy["spec"]["containers"]] == ["app", "side", "dbg"]
    out = (await _logs_contain(kctl, sns, "orig-copy", "-c", "dbg", want="\nsleep 3601")).splitlines()
    assert "sleep 3600" in out and "sleep 3601" in out  # its neighbours' processes
    assert all(cstatus(copy, c).get("restartCount", 0) == 0 for c in ("app", "side", "dbg"))

    # -i: kubectl waits for the copy's debug container and attaches its stdin (--set-image changes a container)
    r = kctl("debug", "-n", sns, "orig", "-i", "--copy-to=orig-copy2", f"--image={BUSYBOX}",
             "--image-pull-policy=IfNotPresent", f"--set-image=side={BUSYBOX}", "-c", "dbg", "--", "sh",
             stdin="echo answer-$((6*7))\nexit 0\n")
    assert "answer-42" in r.stdout, r
    copy2 = await kc.get(PODS, "orig-copy2", sns)
    assert [(c["name"], c.get("stdin")) for c in copy2["spec"]["containers"]] == \
        [("app", None), ("side", None), ("dbg", True)]

    # --replace deletes the original, --same-node keeps the copy on its node
    kctl("debug", "-n", sns, "orig", "--copy-to=orig-copy3", "--replace", "--same-node", f"--image={BUSYBOX}",
         "--image-pull-policy=IfNotPresent", "-c", "dbg", "--", "sleep", "3603")
    assert (await kc.get(PODS, "orig-copy3", sns))["spec"]["nodeName"] == tls_node.name

    async def original_gone() -> bool:
        try:
            await kc.get(PODS, "orig", sns)
        except ApiError as e:
            return e.code == 404
        return False
    await wait_for(original_gone, 30, 0.1, message="the original pod deleted")

    # Kubernetes' validation: one PID namespace cannot be both the pod's own and the node's
    both = pod("both", ctr("app", "true"), shareProcessNamespace=True, hostPID=True)
    with pytest.raises(ApiError) as e:
        await kc.create(PODS, both, sns)
    assert e.value.code == 422 and "ShareProcessNamespace and HostPID cannot both be enabled" in e.value.message


async def test_kubectl_debug_node(tls_node: Node, kctl: Kubectl, kc: Client, sns: str) -> None:
    """kubectl debug node/NAME: a pod on that node in its PID, IPC and network namespaces with the node's root at
    /host; Pod Security refuses it in a baseline namespace with Kubernetes' message, a privileged one runs it."""
    args = (f"node/{tls_node.name}", f"--image={BUSYBOX}", "--image-pull-policy=IfNotPresent", "--", "sh", "-c",
            "ls -1a /host; chroot /host cat /etc/hostname")
    r = kctl("debug", "-n", sns, "--profile=legacy", *args, ok=False)
    assert r.returncode != 0 and 'is forbidden: violates PodSecurity "baseline:latest": host namespaces ' \
        '(hostNetwork=true, hostPID=true, hostIPC=true), hostPath volumes (volume "host-root")' in r.stderr, r.stderr
    async with pod_namespace(kc, "dbgnode", pod_security="privileged") as ns:
        r = kctl("debug", "-n", ns, "--profile=general", *args)
        m = re.search(r"Creating debugging pod (\S+) with container debugger on node " + re.escape(tls_node.name),
                      r.stdout)
        assert m, r.stdout
        done = await wait_pod(kc, ns, m.group(1), lambda p: p["status"].get("phase") == "Succeeded",
                              what="the node debugger to succeed")
        assert done["spec"]["nodeName"] == tls_node.name
        lines = kctl("logs", "-n", ns, m.group(1)).stdout.splitlines()
        with open("/etc/hostname") as f:
            assert lines[-1] == f.read().strip()  # chroot /host: the node's own files
        assert set(lines[:-1]) - {".", ".."} == set(os.listdir("/"))


async def test_kubectl_get_raw_node_proxy(tls_node: Node, kctl: Kubectl, kc: Client, sns: str) -> None:
    """nodes/{name}/proxy/{path}: the kubelet's API through the apiserver (Kubernetes' NodeProxy), for those granted
    get on nodes/proxy (cluster-admin here) and no one else."""
    await _running(kc, sns, pod("measured", ctr("app", "exec sleep 3600")))
    path = f"/api/v1/nodes/{tls_node.name}/proxy/stats/summary"

    def summary_has_pod() -> dict[str, Any] | None:
        body = json.loads(kctl("get", "--raw", path).stdout)
        pods = {(p["podRef"]["namespace"], p["podRef"]["name"]) for p in body.get("pods", [])}
        return body if (sns, "measured") in pods else None
    body = wait_for_sync(summary_has_pod, 30, 0.5, message="the pod in the proxied summary")
    assert body["node"]["nodeName"] == tls_node.name and body["node"]["memory"]["workingSetBytes"] > 0

    r = kctl("get", "--raw", path, "--as", "someone-else", ok=False)
    assert r.returncode != 0 and "Forbidden" in r.stderr and 'cannot get resource "nodes/proxy"' in r.stderr, r.stderr
    r = kctl("get", "--raw", "/api/v1/nodes/no-such-node/proxy/stats/summary", ok=False)
    assert 'nodes "no-such-node" not found' in r.stderr, r.stderr
