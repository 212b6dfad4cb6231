"""Liveness, readiness and startup probes (httpGet, tcpSocket, exec), one asyncio task per probe per container.

As in Kubernetes' prober manager: a startup probe holds the other two back until it succeeds; readiness starts
False (when there is a readiness probe) and follows successThreshold/failureThreshold; a liveness or startup
failure asks the pod worker to kill the container (Event `Unhealthy` "Liveness probe failed: ..."). Workers are
keyed by container id, so a restarted container starts with fresh counters.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from kubelet import httpprobe
from kubelet.plan import PodRuntime
from kubelet.runtime.interface import ContainerState, RuntimeError_
from kubelet.status import ProbeView
from pklib.timeouts import wait_for

log = logging.getLogger("kubelet.probes")

KINDS = ("startup", "liveness", "readiness")


@dataclass
class _Worker:
    container_id: str
    name: str
    pod_ip: str
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: bool = True
    ready: bool = True
    kill: str = ""          # probe failure message once a liveness/startup probe failed for good


def _port(container: dict[str, Any], port: Any) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} not found in the container's ports")


def _was_ready(pod: dict[str, Any], name: str, cid: str) -> bool:
    """The API's status says this very container is ready. A restarted kubelet starts its readiness worker from
    that instead of from "not ready": the container did not change, and turning every pod of the node unready
    until its next probe would take them all out of their Services at once."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == name:
            return bool(status.get("ready")) and status.get("containerID", "").partition("://")[2] == cid
    return False


class ProbeManager:
    def __init__(self, runtime: Any, on_change: Callable[[str], None],
                 on_failure: Callable[[dict[str, Any], str, str], None], network: bool = True) -> None:
        """on_change(pod key): requeue the pod; on_failure(pod, container name, message): record an Event.
        `network` False (hollow nodes, whose pod IPs are made up): httpGet and tcpSocket checks pass unsent."""
        self.runtime = runtime
        self.network = network
        self.on_change = on_change
        self.on_failure = on_failure
        self._workers: dict[tuple[str, str], _Worker] = {}   # (pod uid, container name) -> worker

    async def close(self) -> None:
        for key in list(self._workers):
            self._stop(key)

    def view(self, uid: str) -> ProbeView:
        v = ProbeView()
        for (u, name), w in self._workers.items():
            if u == uid:
                v.ready[name] = w.ready
                v.started[name] = w.started
        return v

    def kills(self, uid: str) -> dict[str, str]:
        return {name: w.kill for (u, name), w in self._workers.items() if u == uid and w.kill}

    def sync(self, pod: dict[str, Any], rt: PodRuntime, key: str) -> None:
        """Probe exactly the running app containers of the pod that declare probes."""
        uid = pod["metadata"]["uid"]
        wanted: dict[str, tuple[str, dict[str, Any]]] = {}
        for spec in pod["spec"]["containers"]:
            if not any(spec.get(f"{k}Probe") for k in KINDS):
                continue
            last = rt.latest(spec["name"], False)
            if last is not None and last.state == ContainerState.RUNNING:
                wanted[spec["name"]] = (last.id, spec)
        for (u, name), w in list(self._workers.items()):
            if u == uid and (name not in wanted or wanted[name][0] != w.container_id):
                self._stop((u, name))
        for name, (cid, spec) in wanted.items():
            if (uid, name) not in self._workers:
                self._start(pod, key, cid, spec, rt.ip)

    def remove_pod(self, uid: str) -> None:
        for key in [k for k in self._workers if k[0] == uid]:
            self._stop(key)

    def _stop(self, key: tuple[str, str]) -> None:
        w = self._workers.pop(key)
        for t in w.tasks:
            t.cancel()

    def _start(self, pod: dict[str, Any], key: str, cid: str, spec: dict[str, Any], pod_ip: str) -> None:
        w = _Worker(cid, spec["name"], pod_ip)
        w.started = not spec.get("startupProbe")
        w.ready = not spec.get("readinessProbe") or _was_ready(pod, spec["name"], cid)
        started = asyncio.Event()
        if w.started:
            started.set()
        self._workers[(pod["metadata"]["uid"], spec["name"])] = w
        for kind in KINDS:
            probe = spec.get(f"{kind}Probe")
            if probe:
                w.tasks.append(asyncio.create_task(self._run(pod, key, w, spec, kind, probe, started),
                                                   name=f"probe:{key}:{spec['name']}:{kind}"))

    async def _run(self, pod: dict[str, Any], key: str, w: _Worker, spec: dict[str, Any], kind: str,
                   probe: dict[str, Any], started: asyncio.Event) -> None:
        if kind != "startup":
            await started.wait()
        period = max(1, probe.get("periodSeconds", 10))
        success_needed = max(1, probe.get("successThreshold", 1))
        failure_needed = max(1, probe.get("failureThreshold", 3))
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        successes = failures = 0
        while True:
            ok, message = await self.check(spec, w.container_id, w.pod_ip, probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "startup":
                if successes >= 1:
                    w.started = True
                    started.set()
                    self.on_change(key)
                    return
                if failures >= failure_needed:
                    return self._failed(pod, key, w, "Startup", message)
            elif kind == "liveness":
                if failures >= failure_needed:
                    return self._failed(pod, key, w, "Liveness", message)
            else:
                ready = w.ready
                if ok and successes >= success_needed:
                    ready = True
                elif not ok:
                    if failures == 1 or failures >= failure_needed:
                        self.on_failure(pod, spec["name"], f"Readiness probe failed: {message}")
                    if failures >= failure_needed:
                        ready = False
                if ready != w.ready:
                    w.ready = ready
                    self.on_change(key)
            await asyncio.sleep(period)

    def _failed(self, pod: dict[str, Any], key: str, w: _Worker, kind: str, message: str) -> None:
        w.kill = f"Container {w.name} failed {kind.lower()} probe, will be restarted"
        self.on_failure(pod, w.name, f"{kind} probe failed: {message}")
        self.on_change(key)

    async def check(self, spec: dict[str, Any], cid: str, pod_ip: str, probe: dict[str, Any]) -> tuple[bool, str]:
        timeout = max(1, probe.get("timeoutSeconds", 1))
        if not self.network and ("httpGet" in probe or "tcpSocket" in probe):
            return True, ""
        try:
            if "exec" in probe:
                cmd = (probe["exec"] or {}).get("command") or []
                res = await self.runtime.exec(cid, cmd, timeout=timeout)
                out = (res.stdout + res.stderr).decode(errors="replace").strip()
                return res.exit_code == 0, out or f"command {cmd!r} exited with {res.exit_code}"
            if "httpGet" in probe:
                return await self._http_get(spec, probe["httpGet"], pod_ip, timeout)
            if "tcpSocket" in probe:
                host = probe["tcpSocket"].get("host") or pod_ip
                port = _port(spec, probe["tcpSocket"].get("port"))
                try:
                    _, writer = await wait_for(asyncio.open_connection(host, port), timeout)
                except (OSError, asyncio.TimeoutError) as e:
                    return False, f"dial tcp {host}:{port}: {e or 'i/o timeout'}"
                writer.close()
                return True, ""
        except ValueError as e:
            return False, str(e)
        except RuntimeError_ as e:
            return False, str(e)
        return True, ""  # grpc probes are not offered here; they are treated as passing

    async def _http_get(self, spec: dict[str, Any], get: dict[str, Any], pod_ip: str, timeout: float
                        ) -> tuple[bool, str]:
        headers = [(h["name"], h.get("value", "")) for h in get.get("httpHeaders") or []]
        return await httpprobe.probe(get.get("host") or pod_ip, _port(spec, get.get("port")), get.get("path") or "/",
                                     (get.get("scheme") or "HTTP").upper() == "HTTPS", headers, timeout)
