"""pods/log and pods/exec: resolved here, served by the kubelet of the pod's node (its HTTP API, kubelet/server.py).

    GET /api/v1/namespaces/{ns}/pods/{name}/log?container&follow&tailLines&sinceSeconds&timestamps&previous
        → the container's log as streamed text
    GET /api/v1/namespaces/{ns}/pods/{name}/exec?command=..&container&stdin&stdout&stderr&tty   (WebSocket)
        subprotocols v5.channel.k8s.io / v4.channel.k8s.io: every frame starts with its channel byte —
        0 stdin, 1 stdout, 2 stderr, 3 status (a metav1.Status with the exit code), 4 resize; v5 adds 255 "close
        stream" (client → server, payload the channel being closed).

The kubelet is reached at the node's InternalIP and status.daemonEndpoints.kubeletEndpoint.Port. The caller's
bearer token goes along: the kubelet asks the API server whether that token may read the pod. Exec is relayed
frame by frame over a second WebSocket to the kubelet, which speaks the same channel framing (whichever protocol
the client chose): output as the command writes it, stdin, resize and close-stdin as the client sends them, and
the kubelet's final status frame (the exit code) before both sockets close.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web

from pklib import resources

from .handlers_objects import object_key
from .status import StatusError, bad_request, not_found
from .storage.interface import Storage

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
LOG_PARAMS = ("follow", "tailLines", "sinceSeconds", "timestamps", "previous", "limitBytes")


def _res(plural: str) -> resources.Resource:
    res = resources.lookup(plural)
    assert res is not None
    return res


PODS, NODES = _res("pods"), _res("nodes")


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


async def _target(storage: Storage, request: web.Request) -> tuple[str, str]:
    """(kubelet base URL, container name) for the request's pod, or a Status error users understand."""
    ns, name = request.match_info["namespace"], request.match_info["name"]
    entry = await storage.get(object_key(PODS, ns, name))
    if entry is None:
        raise not_found("pods", name)
    pod = entry.value
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    all_names = names + [c["name"] for c in pod["spec"].get("initContainers") or []]
    container = request.query.get("container", "")
    if not container:
        if len(names) != 1:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                              f"[{' '.join(names)}]")
        container = names[0]
    elif container not in all_names:
        raise bad_request(f"container {container} is not valid for pod {name}")
    node_name = pod["spec"].get("nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    node_entry = await storage.get(object_key(NODES, None, node_name))
    if node_entry is None:
        raise bad_request(f"node {node_name} of pod {name} does not exist")
    status = node_entry.value.get("status") or {}
    ip = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), "")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 0)
    if not ip or not port:
        raise StatusError(503, "ServiceUnavailable", f"the kubelet of node {node_name} serves no API")
    return f"http://{ip}:{port}", container


def _auth(request: web.Request) -> dict[str, str]:
    header = request.headers.get("Authorization")
    return {"Authorization": header} if header else {}


async def _kubelet_error(resp: aiohttp.ClientResponse) -> StatusError:
    try:
        body = json.loads(await resp.text())
        return StatusError(resp.status, body.get("reason", "BadRequest"), body.get("message", ""))
    except ValueError:
        return StatusError(resp.status, "BadRequest", (await resp.text()).strip())


def routes(storage: Storage) -> list[web.RouteDef]:
    base = "/api/v1/namespaces/{namespace}/pods/{name}"

    async def logs(request: web.Request) -> web.StreamResponse:
        url, container = await _target(storage, request)
        ns, name = request.match_info["namespace"], request.match_info["name"]
        params = {k: request.query[k] for k in LOG_PARAMS if k in request.query}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as s:
                async with s.get(f"{url}/containerLogs/{ns}/{name}/{container}", params=params,
                                 headers=_auth(request)) as kr:
                    if kr.status != 200:
                        raise await _kubelet_error(kr)
                    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                    await resp.prepare(request)
                    async for chunk in kr.content.iter_any():
                        await resp.write(chunk)
                    await resp.write_eof()
                    return resp
        except aiohttp.ClientConnectionError as e:
            raise StatusError(503, "ServiceUnavailable", f"cannot reach the kubelet: {e}") from None

    async def exec_(request: web.Request) -> web.StreamResponse:
        url, container = await _target(storage, request)
        command = request.query.getall("command", [])
        if not command:
            raise bad_request("you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=PROTOCOLS)
        if not ws.can_prepare(request).ok:
            raise bad_request("exec needs a WebSocket upgrade with subprotocol v5.channel.k8s.io or "
                              "v4.channel.k8s.io")
        await ws.prepare(request)
        ns, name = request.match_info["namespace"], request.match_info["name"]
        params = [("command", c) for c in command] + [(k, "true") for k in ("stdin", "tty")
                                                      if _true(request.query.get(k))]
        wanted = {STDOUT} if request.query.get("stdout", "true") != "false" else set()
        wanted |= {STDERR} if request.query.get("stderr", "true") != "false" else set()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as s:
                async with s.ws_connect(f"{url}/exec/{ns}/{name}/{container}", params=params,
                                        headers=_auth(request), autoping=True, heartbeat=None) as kws:
                    await _relay(ws, kws, wanted)
        except aiohttp.WSServerHandshakeError as e:
            await _finish(ws, _failure("Forbidden" if e.status in (401, 403) else "BadRequest",
                                       f"the kubelet refused the exec (HTTP {e.status} {e.message})"))
        except aiohttp.ClientConnectionError as e:
            await _finish(ws, _failure("InternalError", f"cannot reach the kubelet: {e}"))
        return ws

    return [web.get(base + "/log", logs), web.get(base + "/exec", exec_), web.post(base + "/exec", exec_)]


def _failure(reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "reason": reason, "message": message}


async def _finish(ws: web.WebSocketResponse, status: dict[str, Any]) -> None:
    await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
    await ws.close()


async def _relay(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse, wanted: set[int]) -> None:
    """Both directions at once until the kubelet ends the exec (after its status frame) or the client hangs up."""

    async def upstream() -> None:
        async for msg in client:
            if msg.type == aiohttp.WSMsgType.BINARY and msg.data and msg.data[0] in (STDIN, RESIZE, CLOSE):
                await kubelet.send_bytes(msg.data)
        await kubelet.close()  # the client is gone: the kubelet ends the command

    up = asyncio.create_task(upstream())
    status_sent = False
    try:
        async for msg in kubelet:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            if msg.data[0] == ERROR or msg.data[0] in wanted:
                await client.send_bytes(msg.data)
                status_sent |= msg.data[0] == ERROR
        if not status_sent and not client.closed:
            await client.send_bytes(bytes([ERROR]) + json.dumps(_failure(
                "InternalError", "the kubelet ended the exec without an exit status")).encode())
    except ConnectionResetError:
        pass  # the client went away while output was on its way
    finally:
        up.cancel()
        await client.close()
