"""pods/log, pods/exec, pods/attach, pods/portforward and nodes/proxy: resolved here, served by the kubelet of the
pod's node (its HTTP API, kubelet/server.py).

    GET /api/v1/namespaces/{ns}/pods/{name}/log?container&follow&tailLines&sinceSeconds&timestamps&previous
        → the container's log as streamed text
    GET /api/v1/namespaces/{ns}/pods/{name}/exec?command=..&container&stdin&stdout&stderr&tty   (WebSocket)
        subprotocols v5.channel.k8s.io / v4.channel.k8s.io: every frame starts with its channel byte —
        0 stdin, 1 stdout, 2 stderr, 3 status (a metav1.Status with the exit code), 4 resize; v5 adds 255 "close
        stream" (client → server, payload the channel being closed).
    GET /api/v1/namespaces/{ns}/pods/{name}/attach?container&stdin&stdout&stderr&tty   (WebSocket)
        the same channels over the container's own stdio (the kubelet's /attach): output from the moment of
        attaching, stdin to the container when its spec has `stdin: true`.

    GET /api/v1/nodes/{name}/proxy/{path}?query
        the node's kubelet API at {path} (Kubernetes' NodeProxy), e.g. /stats/summary; authorized as `get` on
        nodes/proxy, which only cluster-admin-like roles grant (it reaches every pod's logs and stats).

The kubelet is reached over HTTPS at the node's InternalIP and status.daemonEndpoints.kubeletEndpoint.Port; its
certificate is verified (--kubelet-certificate-authority) and the apiserver authenticates with its own client
certificate (--kubelet-client-certificate). The caller's credentials are never passed on: a Node's status can
name any address, and whoever listens there would get the user's token. Exec is relayed
frame by frame over a second WebSocket to the kubelet, which speaks the same channel framing (whichever protocol
the client chose): output as the command writes it, stdin, resize and close-stdin as the client sends them, and
the kubelet's final status frame (the exit code) before both sockets close.

    GET /api/v1/namespaces/{ns}/pods/{name}/portforward[?ports=80,443]   (WebSocket)
        subprotocol SPDY/3.1+portforward.k8s.io (kubectl: SPDY tunnelled in binary messages) or
        v4.channel.k8s.io (`ports` required; data/error channel per port). Messages are passed on unchanged to
        the kubelet's /portForward, which serves both protocols (kubelet/portforward.py). A plain HTTP upgrade to
        SPDY/3.1 (client-go without the WebSocket tunnel) is bridged to the kubelet's tunnel (spdy_upgrade.py).
"""
from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, Callable

import aiohttp
from aiohttp import web

from pklib import resources

from . import spdy_upgrade
from .shutdown import MESSAGE, Interrupted, until_shutdown
from .handlers_objects import object_key
from .status import StatusError, bad_request, not_found
from .storage.interface import Storage

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORTFORWARD_PROTOCOLS = ("SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io")
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
    all_names = names + [c["name"] for f in ("initContainers", "ephemeralContainers")
                         for c in pod["spec"].get(f) or []]
    container = request.query.get("container", "")
    if not container:
        if len(names) != 1:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                              f"[{' '.join(names)}]")
        container = names[0]
    elif container not in all_names:
        raise bad_request(f"container {container} is not valid for pod {name}")
    return await _kubelet_url(storage, pod, name), container


async def _kubelet_url(storage: Storage, pod: dict[str, Any], name: str) -> str:
    node_name = pod["spec"].get("nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    node_entry = await storage.get(object_key(NODES, None, node_name))
    if node_entry is None:
        raise bad_request(f"node {node_name} of pod {name} does not exist")
    return _node_url(node_entry.value)


def kubelet_url(node: dict[str, Any]) -> str:
    """https://<InternalIP>:<kubelet port> of a Node, or "" when its status names none."""
    status = node.get("status") or {}
    ip = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), "")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 0)
    return f"https://{ip}:{port}" if ip and port else ""


def _node_url(node: dict[str, Any]) -> str:
    url = kubelet_url(node)
    if not url:
        raise StatusError(503, "ServiceUnavailable", f"the kubelet of node {node['metadata']['name']} serves no API")
    return url


async def _kubelet_error(resp: aiohttp.ClientResponse) -> StatusError:
    try:
        body = json.loads(await resp.text())
        return StatusError(resp.status, body.get("reason", "BadRequest"), body.get("message", ""))
    except ValueError:
        return StatusError(resp.status, "BadRequest", (await resp.text()).strip())


def routes(storage: Storage, kubelet_tls: ssl.SSLContext) -> list[web.RouteDef]:
    """kubelet_tls: how to reach kubelets (apiserver/tls.py kubelet_client_context)."""
    base = "/api/v1/namespaces/{namespace}/pods/{name}"

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                     connector=aiohttp.TCPConnector(ssl=kubelet_tls))

    async def logs(request: web.Request) -> web.StreamResponse:
        url, container = await _target(storage, request)
        ns, name = request.match_info["namespace"], request.match_info["name"]
        params = {k: request.query[k] for k in LOG_PARAMS if k in request.query}
        try:
            async with session() as s:
                async with s.get(f"{url}/containerLogs/{ns}/{name}/{container}", params=params) as kr:
                    if kr.status != 200:
                        raise await _kubelet_error(kr)
                    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                    await resp.prepare(request)

                    async def copy() -> None:
                        async for chunk in kr.content.iter_any():
                            await resp.write(chunk)
                    try:
                        await until_shutdown(request, copy())
                    except Interrupted:
                        pass  # `logs -f` at shutdown: the body ends (as the log's end would), the client may retry
                    await resp.write_eof()
                    return resp
        except aiohttp.ClientConnectionError as e:
            raise StatusError(503, "ServiceUnavailable", f"cannot reach the kubelet: {e}") from None

    async def exec_(request: web.Request) -> web.StreamResponse:
        return await stream(request, "exec")

    async def attach(request: web.Request) -> web.StreamResponse:
        return await stream(request, "attach")

    async def stream(request: web.Request, verb: str) -> web.StreamResponse:
        """exec (a new command) or attach (the container's own stdio): the same framing, relayed."""
        url, container = await _target(storage, request)
        command = request.query.getall("command", []) if verb == "exec" else []
        if verb == "exec" and not command:
            raise bad_request("you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=PROTOCOLS)
        if not ws.can_prepare(request).ok:
            raise bad_request(f"{verb} needs a WebSocket upgrade with subprotocol v5.channel.k8s.io or "
                              "v4.channel.k8s.io")
        await ws.prepare(request)
        ns, name = request.match_info["namespace"], request.match_info["name"]
        params = [("command", c) for c in command] + [(k, "true") for k in ("stdin", "tty")
                                                      if _true(request.query.get(k))]
        wanted = {STDOUT} if request.query.get("stdout", "true") != "false" else set()
        wanted |= {STDERR} if request.query.get("stderr", "true") != "false" else set()
        try:
            async with session() as s:
                async with s.ws_connect(f"{url}/{verb}/{ns}/{name}/{container}", params=params,
                                        autoping=True, heartbeat=None) as kws:
                    try:
                        await until_shutdown(request, _relay(ws, kws, wanted))
                    except Interrupted:  # the command goes on in the pod; the client learns why its stream ended
                        await _finish(ws, _failure("ServiceUnavailable", MESSAGE))
        except aiohttp.WSServerHandshakeError as e:
            await _finish(ws, _failure("Forbidden" if e.status in (401, 403) else "BadRequest",
                                       f"the kubelet refused the {verb} (HTTP {e.status} {e.message})"))
        except aiohttp.ClientConnectionError as e:
            await _finish(ws, _failure("InternalError", f"cannot reach the kubelet: {e}"))
        return ws

    async def portforward(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        entry = await storage.get(object_key(PODS, request.match_info["namespace"], name))
        if entry is None:
            raise not_found("pods", name)
        url = await _kubelet_url(storage, entry.value, name)
        ws = web.WebSocketResponse(protocols=PORTFORWARD_PROTOCOLS, max_msg_size=0)
        ready = ws.can_prepare(request)
        plain_spdy = not ready.ok and spdy_upgrade.wants_spdy(request)
        if not ready.ok and not plain_spdy:
            raise bad_request(f"port forwarding needs an upgrade: WebSocket with subprotocol {PORTFORWARD_PROTOCOLS[0]}"
                              f" or {PORTFORWARD_PROTOCOLS[1]}, or SPDY/3.1 with X-Stream-Protocol-Version "
                              f"{spdy_upgrade.PROTOCOL}")
        # no subprotocol: the v4 channels, as Kubernetes does; a plain SPDY upgrade goes through the kubelet's tunnel
        protocol = PORTFORWARD_PROTOCOLS[0] if plain_spdy else ready.protocol or PORTFORWARD_PROTOCOLS[1]
        params = []
        if protocol != PORTFORWARD_PROTOCOLS[0]:  # SPDY names the port per stream; the channels need them now
            ports = [p for v in request.query.getall("ports", []) + request.query.getall("port", [])
                     for p in v.split(",")]
            if not ports:
                raise bad_request('query parameter "ports" is required')
            for p in ports:
                if not p.isdigit() or not 0 < int(p) < 65536:
                    raise bad_request(f'unable to parse "{p}" as a port: must be a number from 1 to 65535')
            params = [("port", p) for p in ports]
        ns = request.match_info["namespace"]
        try:
            async with session() as s:
                async with s.ws_connect(f"{url}/portForward/{ns}/{name}", params=params, protocols=(protocol,),
                                        heartbeat=None, max_msg_size=0) as kws:
                    if plain_spdy:
                        return await spdy_upgrade.bridge(request, kws)
                    await ws.prepare(request)
                    try:
                        await until_shutdown(request, _pipe(ws, kws))
                    except Interrupted:
                        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=MESSAGE.encode())
        except aiohttp.WSServerHandshakeError as e:
            raise StatusError(e.status if e.status in (400, 401, 403, 404) else 500,
                              "NotFound" if e.status == 404 else "BadRequest",
                              f"the kubelet refused to forward ports of pod {name} (HTTP {e.status} {e.message})") \
                from None
        except aiohttp.ClientConnectionError as e:
            if not ws.prepared:
                raise StatusError(503, "ServiceUnavailable", f"cannot reach the kubelet: {e}") from None
        return ws

    async def node_proxy(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        entry = await storage.get(object_key(NODES, None, name))
        if entry is None:
            raise not_found("nodes", name)
        url = _node_url(entry.value) + "/" + request.match_info["path"].lstrip("/")
        try:
            async with session() as s:
                async with s.get(url, params=request.query) as kr:
                    resp = web.StreamResponse(status=kr.status, headers={
                        "Content-Type": kr.headers.get("Content-Type", "application/octet-stream")})
                    await resp.prepare(request)
                    async for chunk in kr.content.iter_any():
                        await resp.write(chunk)
                    await resp.write_eof()
                    return resp
        except aiohttp.ClientConnectionError as e:
            raise StatusError(503, "ServiceUnavailable", f"cannot reach the kubelet of node {name}: {e}") from None

    node_base = "/api/v1/nodes/{name}/proxy"
    return [web.get(node_base + "{path:/?}", node_proxy), web.get(node_base + "/{path:.+}", node_proxy),
            web.get(base + "/log", logs), web.get(base + "/exec", exec_), web.post(base + "/exec", exec_),
            web.get(base + "/attach", attach), web.post(base + "/attach", attach),
            web.get(base + "/portforward", portforward), web.post(base + "/portforward", portforward)]


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _failure(reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "reason": reason, "message": message}


async def _finish(ws: web.WebSocketResponse, status: dict[str, Any],
                  code: int = aiohttp.WSCloseCode.OK) -> None:
    if not ws.closed:
        await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
    await ws.close(code=code)


async def _upstream(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse,
                    wanted: Callable[[bytes], bool]) -> None:
    """The client's binary messages that `wanted` lets through, to the kubelet; when the client is gone the
    kubelet's socket is closed, which ends the exec / the forwarded connections there."""
    async for msg in client:
        if msg.type == aiohttp.WSMsgType.BINARY and msg.data and wanted(msg.data):
            await kubelet.send_bytes(msg.data)
    await kubelet.close()


async def _pipe(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse) -> None:
    """Port forwarding: binary messages passed on unchanged both ways (the kubelet speaks the client's
    protocol) until either side closes."""
    up = asyncio.create_task(_upstream(client, kubelet, lambda frame: True))
    try:
        async for msg in kubelet:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await client.send_bytes(msg.data)
    except ConnectionResetError:
        pass  # the client went away while data was on its way
    finally:
        up.cancel()
        if not _cancelled():  # at shutdown the caller closes, saying why
            await client.close()


async def _relay(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse, wanted: set[int]) -> None:
    """Both directions at once until the kubelet ends the exec (after its status frame) or the client hangs up."""
    up = asyncio.create_task(_upstream(client, kubelet, lambda frame: frame[0] in (STDIN, RESIZE, CLOSE)))
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
        if not _cancelled():  # at shutdown the caller closes, saying why
            await client.close()
