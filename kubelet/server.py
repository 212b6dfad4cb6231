"""The kubelet's HTTP API (what the API server's pods/log and pods/exec proxy calls).

    GET  /healthz
    GET  /portForward/{namespace}/{pod}?port=..   (WebSocket: SPDY/3.1 tunnel or v4 channels, kubelet/portforward.py)
    GET  /stats/summary        (node and per-pod/container cpu + memory, like the kubelet's Summary API)
    GET  /containerLogs/{namespace}/{pod}/{container}?follow&tailLines&sinceSeconds&timestamps&previous
    GET  /exec/{namespace}/{pod}/{container}?command=..&command=..[&stdin=true][&tty=true]   (WebSocket)
         the channel framing of pods/exec (apiserver/proxy_pods.py): output frames as the command writes them,
         stdin / resize / close-stdin frames as they arrive, then one status frame (a metav1.Status with the exit
         code) and the close. With a TTY, stderr goes to stdout through it.
    GET  /attach/{namespace}/{pod}/{container}[?stdin=true][&tty=true]   (WebSocket)
         the same framing over the container's own stdio (conmon's attach socket, kubelet/runtime/attach.py):
         output from the moment of attaching; a Success status when the container's output ends. Hanging up
         only detaches.

Served over TLS only (--tls-cert-file/--tls-private-key-file), and only for callers with a client certificate
of --client-ca-file (x509 authentication, as the kubelet's): a caller without one gets 401, a certificate of
another CA fails the handshake. The API server calls with its own client certificate
(--kubelet-client-certificate, CN kube-apiserver-kubelet-client in group system:masters), having checked the
user's access itself; a user's token never reaches the kubelet, and the kubelet accepts no bearer tokens at all
(so there are no token reviews to cache or rate-limit). Only that certificate is authorized (as Kubernetes'
default system:kubelet-api-admin binding); another certificate of the CA gets 403. /healthz is open.
"""
from __future__ import annotations

import asyncio
import json
import logging
import ssl
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from aiohttp import web

from kubelet import portforward
from kubelet.host import HostError, PodHost
from kubelet.runtime.interface import ExecStream, LogOptions, NotFound
from kubelet.summary import Summarizer

log = logging.getLogger("kubelet.server")
STDIN, STATUS, RESIZE, CLOSE = 0, 3, 4, 255  # channel bytes (stdout 1 and stderr 2 come from the session)
# Who may use the kubelet API: the API server's kubelet client certificate (pkctl/cluster/pki.py issues it).
AUTHORIZED_CN, AUTHORIZED_GROUP = "kube-apiserver-kubelet-client", "system:masters"


def _error(code: int, reason: str, message: str) -> web.HTTPException:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message,
            "code": code}
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound}
    return cls.get(code, web.HTTPInternalServerError)(text=json.dumps(body), content_type="application/json")


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _error(400, "BadRequest", f"{name}: {raw!r} is not an integer") from None
    if value < 0:
        raise _error(400, "BadRequest", f"{name} must not be negative")
    return value


def server_tls_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    """TLS for the kubelet API that asks callers for a client certificate of client_ca_file; ValueError (a
    one-line flag error) when a file is missing or unreadable."""
    if not (cert_file and key_file and client_ca_file):
        raise ValueError("the kubelet API (--port) is served over TLS only: give --tls-cert-file, "
                         "--tls-private-key-file and --client-ca-file (or --port 0)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
        ctx.load_verify_locations(cafile=client_ca_file)
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"cannot load the kubelet's TLS files ({cert_file}, {key_file}, {client_ca_file}): "
                         f"{e}") from None
    # Optional: a caller without a certificate gets a 401 Status it can read; one of another CA fails the handshake.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _subject(request: web.Request) -> tuple[str, list[str]] | None:
    """(common name, organizations) of the caller's verified client certificate, None without one."""
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    if not cert:
        return None
    attrs = [(k, v) for rdn in cert.get("subject", ()) for k, v in rdn]
    return (next((v for k, v in attrs if k == "commonName"), ""),
            [v for k, v in attrs if k == "organizationName"])


def _host_error(e: HostError) -> web.HTTPException:
    return _error(e.code, e.reason, e.message)


class KubeletServer:
    def __init__(self, host: PodHost) -> None:
        self.host = host
        self.summarizer = Summarizer(host)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.logs)
        # POST as well, to answer a caller that did not upgrade with a clear error instead of 405
        app.router.add_get("/exec/{namespace}/{pod}/{container}", self.exec)
        app.router.add_post("/exec/{namespace}/{pod}/{container}", self.exec)
        app.router.add_get("/attach/{namespace}/{pod}/{container}", self.attach)
        app.router.add_post("/attach/{namespace}/{pod}/{container}", self.attach)
        # pods/portforward (kubelet/portforward.py); POST answers a caller that did not upgrade with a clear error
        app.router.add_get("/portForward/{namespace}/{pod}", lambda r: portforward.handle(self.host, r))
        app.router.add_post("/portForward/{namespace}/{pod}", lambda r: portforward.handle(self.host, r))
        app.router.add_get("/stats/summary", self.summary)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        subject = _subject(request)
        if subject is None:
            raise _error(401, "Unauthorized", "Unauthorized")
        cn, groups = subject
        if cn != AUTHORIZED_CN and AUTHORIZED_GROUP not in groups:
            raise _error(403, "Forbidden", f'User "{cn}" cannot access the kubelet API')
        return await handler(request)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _container(self, request: web.Request, previous: bool = False) -> str:
        ns, name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            return await self.host.find_container(ns, name, container, previous)
        except HostError as e:
            raise _host_error(e) from None

    async def logs(self, request: web.Request) -> web.StreamResponse:
        cid = await self._container(request, _bool(request.query.get("previous")))
        since = _int(request, "sinceSeconds")
        options = LogOptions(follow=_bool(request.query.get("follow")), tail=_int(request, "tailLines"),
                             since=datetime.now(timezone.utc) - timedelta(seconds=since) if since else None,
                             timestamps=_bool(request.query.get("timestamps")),
                             limit_bytes=_int(request, "limitBytes"))
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        try:
            async for line in self.host.logs(cid, options):
                await resp.write((line.format(options.timestamps) + "\n").encode())
        except (NotFound, ConnectionResetError):
            pass  # the container went away, or the reader did
        await resp.write_eof()
        return resp

    async def exec(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            raise _error(400, "BadRequest", "exec needs a WebSocket upgrade")
        await ws.prepare(request)
        try:
            session = await self._start_exec(request)
        except web.HTTPException as e:
            body = json.loads(e.text or "{}")
            await _finish(ws, _failure(body.get("reason", "BadRequest"), body.get("message", "")))
            return ws
        await _serve(ws, session, request.query.getall("command"))
        return ws

    async def attach(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            raise _error(400, "BadRequest", "attach needs a WebSocket upgrade")
        await ws.prepare(request)
        try:
            cid = await self._container(request)
            session = await self.host.attach(cid, request.match_info["container"],
                                             stdin=_bool(request.query.get("stdin")),
                                             tty=_bool(request.query.get("tty")))
        except web.HTTPException as e:
            body = json.loads(e.text or "{}")
            await _finish(ws, _failure(body.get("reason", "BadRequest"), body.get("message", "")))
            return ws
        except HostError as e:
            await _finish(ws, _failure(e.reason, e.message))
            return ws
        await _serve(ws, session, [])
        return ws

    async def _start_exec(self, request: web.Request) -> ExecStream:
        command = request.query.getall("command", [])
        if not command:
            raise _error(400, "BadRequest", "you must specify at least 1 command")
        cid = await self._container(request)
        try:
            return await self.host.start_exec(cid, request.match_info["container"], command,
                                              stdin=_bool(request.query.get("stdin")),
                                              tty=_bool(request.query.get("tty")))
        except HostError as e:
            raise _host_error(e) from None

    async def summary(self, _: web.Request) -> web.Response:
        """The node's and its pods' CPU and memory usage (kubelet/summary.py)."""
        return web.json_response(await self.summarizer.summary())


def _failure(reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "reason": reason, "message": message}


def exit_status(command: list[str], code: int) -> dict[str, Any]:
    """The metav1.Status the status channel carries when the command ended (kubectl takes its exit code from it)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    status = _failure("NonZeroExitCode", f"command terminated with non-zero exit code: error executing command "
                                         f"{command}, exit code {code}")
    status["details"] = {"causes": [{"reason": "ExitCode", "message": str(code)}]}
    return status


def parse_resize(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from a resize frame's {"Width": w, "Height": h}; None for anything else (ignored)."""
    try:
        size = json.loads(payload)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, TypeError, KeyError):
        return None
    return (width, height) if 0 < width < 65536 and 0 < height < 65536 else None


async def _finish(ws: web.WebSocketResponse, status: dict[str, Any]) -> None:
    if not ws.closed:
        await ws.send_bytes(bytes([STATUS]) + json.dumps(status).encode())
    await ws.close()


async def _serve(ws: web.WebSocketResponse, session: ExecStream, command: list[str]) -> None:
    """Output to the socket as produced, socket input to the command as it arrives; the exit status last."""
    inputs = asyncio.create_task(_forward_input(ws, session))
    try:
        async for channel, chunk in session.output():
            await ws.send_bytes(bytes([channel]) + chunk)
        code = await session.wait()
        inputs.cancel()
        await _finish(ws, exit_status(command, code))
    except ConnectionResetError:
        pass  # the API server went away: the session is ended below
    finally:
        inputs.cancel()
        await session.terminate()
        session.close()
        await ws.close()


async def _forward_input(ws: web.WebSocketResponse, session: ExecStream) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
            continue
        channel, payload = msg.data[0], msg.data[1:]
        if channel == STDIN:
            await session.write_stdin(payload)
        elif channel == RESIZE and (size := parse_resize(payload)):
            session.resize(*size)
        elif channel == CLOSE and payload[:1] == bytes([STDIN]):
            session.close_stdin()
    # the caller is gone (it hung up, or the user's client did): a command nobody can see or feed is ended
    await session.terminate()
