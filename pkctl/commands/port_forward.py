"""`pkctl port-forward TYPE/NAME [LOCAL:]REMOTE [...] [--address ADDR,...]`: local ports to ports of a pod, like
`kubectl port-forward`.

The target is a pod, or a service / deployment / replicaset / statefulset / daemonset whose pods are selected
(a running, ready one is preferred). For a service, REMOTE is a service port (number or name), translated to
the pod's targetPort. Each accepted local connection becomes one WebSocket to the API server's pods/portforward
(subprotocol v4.channel.k8s.io: channel 0 data, channel 1 errors, each channel's first message carries the
port) which the pod's kubelet connects to 127.0.0.1:REMOTE inside the pod. Ctrl-C ends it with exit code 0.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp

from pklib.client import Client
from pklib.resources import Resource, lookup
from pklib.selectors import selector_from_match

from ..connect import Connection, run
from ..errors import CommandError

PROTOCOL = "v4.channel.k8s.io"
DATA, ERROR = 0, 1
CHUNK = 32 * 1024
WORKLOADS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("port-forward", help="forward local ports to a pod: port-forward TYPE/NAME [LOCAL:]REMOTE",
                       description="Forward one or more local ports to a pod (or to a pod selected by a service "
                                   "or workload). REMOTE may be a port number or a named container/service port.")
    p.add_argument("target", metavar="TYPE/NAME", help="pod/NAME (or NAME), svc/NAME, deploy/NAME, rs/, sts/, ds/, job/")
    p.add_argument("ports", metavar="[LOCAL:]REMOTE", nargs="*",
                   help="8080:80 forwards local 8080 to 80; 80 forwards 80 to 80; :80 picks a free local port")
    p.add_argument("--address", action="append", default=[],
                   help="addresses to listen on, comma-separated: IPs or localhost (default localhost)")
    p.add_argument("--pod-running-timeout", type=float, default=60.0,
                   help="seconds to wait for a pod of the service or workload to exist (default 60)")
    p.set_defaults(func=command)


@dataclass
class PortSpec:
    local: int          # 0: any free port
    remote: str         # a number, or a port name resolved against the pod / service
    local_given: bool   # "8080:80" vs "80" (a service port then stays the local port)


def parse_port_specs(specs: list[str]) -> list[PortSpec]:
    """kubectl's forms: `5000`, `8888:5000`, `:5000` / `0:5000` (a free local port)."""
    if not specs:
        raise CommandError("at least 1 PORT is required for port-forward")
    out = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) > 2 or not parts[-1]:
            raise CommandError(f"invalid port format '{spec}'")
        remote = parts[-1]
        if remote.isdigit() and not 0 < int(remote) < 65536:
            raise CommandError("remote port must be > 0" if int(remote) == 0 else
                               f"error parsing remote port '{remote}': must be a number from 1 to 65535")
        if len(parts) == 1:  # `80`, or a named port `http`: the local port is the remote port's number
            out.append(PortSpec(int(remote) if remote.isdigit() else 0, remote, False))
            continue
        local_text = parts[0] or "0"
        if not local_text.isdigit() or int(local_text) > 65535:
            raise CommandError(f"error parsing local port '{local_text}': must be a number from 0 to 65535")
        out.append(PortSpec(int(local_text), remote, True))
    return out


def parse_addresses(values: list[str]) -> list[tuple[str, bool]]:
    """(address, required) pairs; `localhost` is 127.0.0.1 and ::1, of which one succeeding is enough."""
    seen: dict[str, bool] = {}
    for value in values or ["localhost"]:
        for text in (v.strip() for v in value.split(",")):
            if text == "localhost":
                seen.setdefault("127.0.0.1", False)
                seen.setdefault("::1", False)
                continue
            try:
                seen[str(ipaddress.ip_address(text))] = True
            except ValueError:
                raise CommandError(f"{text} is not a valid IP") from None
    return sorted(seen.items())


def _named_container_port(pod: dict[str, Any], name: str) -> int | None:
    for c in pod["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == name:
                return int(p["containerPort"])
    return None


def pod_remote_port(pod: dict[str, Any], remote: str) -> int:
    if remote.isdigit():
        return int(remote)
    port = _named_container_port(pod, remote)
    if port is None:
        raise CommandError(f"Pod '{pod['metadata']['name']}' does not have a named port '{remote}'")
    return port


def service_remote_port(svc: dict[str, Any], pod: dict[str, Any], spec: PortSpec) -> tuple[int, int]:
    """(local, container port) for a service port given by number or name, through its targetPort."""
    name = svc["metadata"]["name"]
    for p in svc["spec"].get("ports") or []:
        if str(p.get("port")) == spec.remote or (p.get("name") and p.get("name") == spec.remote):
            if (p.get("protocol") or "TCP") != "TCP":
                raise CommandError(f"UDP protocol is not supported for port {p.get('port')}")
            target = p.get("targetPort", p["port"])
            container = pod_remote_port(pod, str(target)) if target else int(p["port"])
            return (spec.local if spec.local_given else int(p["port"])), container
    raise CommandError(f"Service {name} does not have a service port {spec.remote}")


def _rank(pod: dict[str, Any]) -> tuple[int, int, str]:
    """Running and ready pods first, then the oldest (what kubectl's choice of pod amounts to)."""
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return (0 if status.get("phase") == "Running" else 1, 0 if ready else 1,
            pod["metadata"].get("creationTimestamp", ""))


async def _pick_pod(c: Client, ns: str, what: str, matches: Any, timeout: float) -> dict[str, Any]:
    pods_res = _res("pods")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pods = [p for p in (await c.list(pods_res, ns)).get("items") or []
                if matches(p["metadata"].get("labels") or {}) and not p["metadata"].get("deletionTimestamp")]
        if pods:
            return sorted(pods, key=_rank)[0]
        if loop.time() >= deadline:
            raise CommandError(f"timed out waiting for a pod of {what}")
        await asyncio.sleep(0.5)


def _res(name: str) -> Resource:
    res = lookup(name)
    assert res is not None, name
    return res


async def resolve(c: Client, ns: str, target: str, specs: list[PortSpec],
                  timeout: float) -> tuple[str, list[tuple[int, int]]]:
    """The pod to forward to and (local, remote) port pairs."""
    kind_text, sep, name = target.partition("/")
    if not sep:
        kind_text, name = "pods", target
    res = lookup(kind_text)
    if res is None or not name:
        raise CommandError(f'the server doesn\'t have a resource type "{kind_text}"' if res is None else
                           "a resource name is required: TYPE/NAME")
    obj = await c.get(res, name, ns)
    svc = None
    if res.kind == "Pod":
        pod = obj
    elif res.kind == "Service":
        svc, selector = obj, obj["spec"].get("selector") or {}
        if not selector:
            raise CommandError(f"invalid service '{name}': Service is defined without a selector")
        pod = await _pick_pod(c, ns, f"service {name}",
                              lambda labels: all(labels.get(k) == v for k, v in selector.items()), timeout)
    elif res.kind in WORKLOADS:
        sel = selector_from_match(obj["spec"].get("selector") or {})
        pod = await _pick_pod(c, ns, f"{res.kind.lower()} {name}", sel.matches, timeout)
    else:
        raise CommandError(f"cannot port-forward to a {res.kind}: use a pod, service, deployment, replicaset, "
                           "statefulset, daemonset or job")
    phase = (pod.get("status") or {}).get("phase", "Pending")
    if phase != "Running":
        raise CommandError(f"unable to forward port because pod is not running. Current status={phase}")
    pairs = []
    for spec in specs:
        if svc is not None:
            pairs.append(service_remote_port(svc, pod, spec))
        else:
            remote = pod_remote_port(pod, spec.remote)
            pairs.append((spec.local if (spec.local_given or spec.remote.isdigit()) else remote, remote))
    return pod["metadata"]["name"], pairs


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Forwarder:
    def __init__(self, conn: Connection, pod: str) -> None:
        self.client = conn.client
        self.url = self.client.server + _res("pods").path(conn.namespace, pod, "portforward")
        self.tasks: set[asyncio.Task[None]] = set()

    async def listen(self, addresses: list[tuple[str, bool]], pairs: list[tuple[int, int]]) -> list[asyncio.Server]:
        servers: list[asyncio.Server] = []
        listened = False
        for local, remote in pairs:
            errors, ok_required, failed_required, ok_optional = [], 0, 0, 0
            chosen = {"port": local}  # a free port (0) is chosen by the first listener and used for the others
            accept = self._acceptor(chosen, remote)
            for host, required in addresses:
                try:
                    server = await asyncio.start_server(accept, host, chosen["port"])
                except OSError as e:
                    # asyncio wraps the errno's text in its own sentence: the plain reason reads better
                    reason = os.strerror(e.errno).lower() if e.errno else str(e)
                    errors.append(f"{_show(host, chosen['port'])}: {reason}")
                    failed_required += required
                    continue
                local = chosen["port"] = server.sockets[0].getsockname()[1]
                servers.append(server)
                ok_required += required
                ok_optional += not required
                print(f"Forwarding from {_show(host, local)} -> {remote}", flush=True)
            if failed_required or (ok_required + ok_optional == 0):
                print(f"Unable to listen on port {local}: {'; '.join(errors)}", file=sys.stderr, flush=True)
            else:
                listened = True
        if not listened:
            for s in servers:
                s.close()
            raise CommandError("unable to listen on any of the requested ports: "
                               f"{' '.join(f'{lp}:{rp}' for lp, rp in pairs)}")
        return servers

    def _acceptor(self, chosen: dict[str, int], remote: int) -> Callable[[asyncio.StreamReader,
                                                                         asyncio.StreamWriter], None]:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.create_task(self._connection(reader, writer, chosen["port"], remote))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return accepted

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, local: int,
                          remote: int) -> None:
        print(f"Handling connection for {local}", flush=True)
        try:
            async with self.client.session.ws_connect(self.url, params={"ports": str(remote)},
                                                      protocols=(PROTOCOL,), max_msg_size=0) as ws:
                message = await _relay(ws, reader, writer)
            if message:
                print(f"error: an error occurred forwarding {local} -> {remote}: {message}", file=sys.stderr,
                      flush=True)
        except aiohttp.WSServerHandshakeError as e:
            print(f"error: an error occurred forwarding {local} -> {remote}: the server refused the connection "
                  f"(HTTP {e.status} {e.message})", file=sys.stderr, flush=True)
        except (aiohttp.ClientError, OSError) as e:
            print(f"error: an error occurred forwarding {local} -> {remote}: {e}", file=sys.stderr, flush=True)
        finally:
            writer.close()


async def _relay(ws: aiohttp.ClientWebSocketResponse, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> str:
    """Bytes both ways until the pod side ends or the local client closes; returns the error channel's text."""

    async def upstream() -> None:
        while chunk := await reader.read(CHUNK):
            await ws.send_bytes(bytes([DATA]) + chunk)
        # the v4 channels cannot half-close: the local client's end is the connection's end
        await ws.close()

    up = asyncio.create_task(upstream())
    seen: set[int] = set()
    error = b""
    try:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = msg.data[0], msg.data[1:]
            if channel not in seen:  # every channel's first message is the port it serves
                seen.add(channel)
                payload = payload[2:]
            if channel == DATA and payload:
                writer.write(payload)
                await writer.drain()
            elif channel == ERROR:
                error += payload
    except (ConnectionResetError, BrokenPipeError):
        pass  # the local client went away
    finally:
        up.cancel()
    return error.decode(errors="replace")


def command(args: argparse.Namespace) -> int:
    specs = parse_port_specs(args.ports)
    addresses = parse_addresses(args.address)

    async def forward(conn: Connection) -> int:
        pod, pairs = await resolve(conn.client, conn.namespace, args.target, specs, args.pod_running_timeout)
        fwd = Forwarder(conn, pod)
        servers = await fwd.listen(addresses, pairs)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for s in servers:
                s.close()
            for t in list(fwd.tasks):
                t.cancel()
            await asyncio.gather(*fwd.tasks, return_exceptions=True)
        return 0

    return run(args, forward)
