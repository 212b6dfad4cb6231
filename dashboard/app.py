"""The dashboard's web app: login, the API proxy and the static page.

Access: `/login?token=T` with the one-time token printed at start (short-lived: it expires LOGIN_TTL seconds after
start if unused) sets an HttpOnly, SameSite=Strict session cookie and redirects to the page; every other path answers 401 without a valid session. The Host header must name the
address served (no DNS rebinding), and requests that change something (any method but GET/HEAD/OPTIONS) and
WebSocket upgrades must carry an Origin naming it too (no cross-site request forgery).

Proxy: `/api/...` and `/apis/...` go to the API server as they came (query included) with the kubeconfig's
credentials, answers streamed back as they arrive (watches, `follow` logs); a WebSocket upgrade (pods/exec) is
answered with the subprotocol the API server chose and frames are passed on unchanged both ways.

Usage: `/usage/...` the CPU and memory series of the last hour that this process samples (usage.py).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from pklib.client import Client

from .usage import Usage, add_routes as add_usage_routes

log = logging.getLogger("dashboard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WEB = Path(__file__).parent / "web"
SESSION_COOKIE = "pkube-dashboard-session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Request headers passed on to the API server; the rest (cookies above all) stay here.
FORWARDED_HEADERS = ("Accept", "Content-Type")
# Answer headers passed back.
RETURNED_HEADERS = ("Content-Type", "Warning", "Audit-Id")
# Vendored front-end files: URL path under /vendor/ → file in node_modules.
VENDOR = {
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
    "js-yaml.mjs": "js-yaml/dist/js-yaml.mjs",
}


LOGIN_TTL = 600.0  # seconds the printed login link works, unused


@dataclass
class Access:
    """Who may use the dashboard: the holder of the login token once (within LOGIN_TTL of its making), then the
    sessions it opened."""
    login_token: str | None = field(default_factory=lambda: secrets.token_urlsafe(24))
    sessions: set[str] = field(default_factory=set)
    # "host:port" names this server answers to (set once bound).
    hosts: set[str] = field(default_factory=set)
    clock: Callable[[], float] = time.monotonic
    login_expires: float = field(init=False)

    def __post_init__(self) -> None:
        self.login_expires = self.clock() + LOGIN_TTL

    def login(self, token: str) -> str | None:
        """A new session id for the right token in time, which then stops working; None otherwise."""
        if self.login_token is None or not secrets.compare_digest(token.encode(), self.login_token.encode()):
            return None
        if self.clock() > self.login_expires:
            self.login_token = None
            return None
        self.login_token = None
        session = secrets.token_urlsafe(32)
        self.sessions.add(session)
        return session

    def origin_ok(self, origin: str | None) -> bool:
        return origin is not None and any(origin == f"http://{h}" for h in self.hosts)


ACCESS = web.AppKey("access", Access)
CLIENT = web.AppKey("client", Client)


# On every answer: no framing by other sites (its buttons act with your credentials), no type sniffing, and no
# Referer with the page's address.
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    access = request.app[ACCESS]
    if access.hosts and request.host not in access.hosts:
        return _plain(400, f"unexpected Host {request.host!r}: open the dashboard at its printed address")
    if request.path == "/login":
        return await handler(request)
    if request.cookies.get(SESSION_COOKIE) not in access.sessions:
        return _plain(401, "Unauthorized: open the login link that `pkctl dashboard` printed")
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if (request.method not in SAFE_METHODS or upgrade) and not access.origin_ok(request.headers.get("Origin")):
        return _plain(403, "Forbidden: the request's Origin is not this dashboard")
    return await handler(request)


async def login(request: web.Request) -> web.StreamResponse:
    session = request.app[ACCESS].login(request.query.get("token", ""))
    if session is None:
        log.warning("login refused (a wrong, used or expired link) from %s", request.remote)
        return _plain(401, "Unauthorized: this login link is wrong or was already used, or expired (it works once, "
                           f"within {LOGIN_TTL / 60:.0f} minutes); run `pkctl dashboard` again for a new one")
    log.info("logged in from %s (the link is now used)", request.remote)
    response = web.HTTPFound("/")
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Strict", path="/")
    return response


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(WEB / "index.html", headers={"Cache-Control": "no-store"})


async def vendor(request: web.Request) -> web.StreamResponse:
    rel = VENDOR.get(request.match_info["name"])
    path = WEB / "node_modules" / rel if rel else None
    if path is None or not path.is_file():
        return _plain(404, "not found (are the dashboard's npm packages installed? scripts/install-deps.sh)")
    return web.FileResponse(path)


async def proxy(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    url = client.server + request.rel_url.raw_path_qs  # path and query exactly as sent
    if request.headers.get("Upgrade", "").lower() == "websocket":
        if request.query.get("watch") in ("1", "true"):
            return await _watch_websocket(request, client, url)
        return await _proxy_websocket(request, client, url)
    headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
    body = await request.read() if request.body_exists else None
    try:
        async with client.session.request(request.method, url, data=body, headers=headers,
                                          allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for h in RETURNED_HEADERS:
                if h in upstream.headers:
                    response.headers[h] = upstream.headers[h]
            response.headers["Cache-Control"] = "no-store"
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except aiohttp.ClientConnectionError as e:
        return _plain(502, f"the API server {client.server} cannot be reached: {e}")


async def _watch_websocket(request: web.Request, client: Client, url: str) -> web.StreamResponse:
    """A watch over a WebSocket, one event per text message, as kube-apiserver serves it: a browser holds at most
    six HTTP/1.1 connections to a server, so a page with more watches than that would stall on streamed answers;
    WebSockets do not count against that limit. The watch itself is the API server's streamed answer."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)

    async def relay() -> None:
        async with client.session.get(url) as upstream:
            if upstream.status != 200:  # the error as a watch ERROR event (a Status), then the end
                body = await upstream.text()
                await ws.send_str('{"type":"ERROR","object":' + (body if body.startswith("{") else "{}") + "}")
                return
            buffered = b""
            async for chunk in upstream.content.iter_any():  # not by line: an event may exceed aiohttp's line limit
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if line.strip():
                        await ws.send_str(line.decode())

    async def closed() -> None:
        async for _ in ws:  # the page sends nothing; this ends when it goes away
            pass

    tasks = [asyncio.create_task(relay()), asyncio.create_task(closed())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.close()
    return ws


async def _proxy_websocket(request: web.Request, client: Client, url: str) -> web.StreamResponse:
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    try:
        upstream = await client.session.ws_connect(url.replace("http", "ws", 1), protocols=protocols)
    except aiohttp.WSServerHandshakeError as e:
        return _plain(e.status or 502, e.message or "the API server refused the WebSocket")
    except aiohttp.ClientConnectionError as e:
        return _plain(502, f"the API server {client.server} cannot be reached: {e}")
    ws = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else ())
    await ws.prepare(request)

    async def pump(src: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
                   dst: aiohttp.ClientWebSocketResponse | web.WebSocketResponse) -> None:
        async for msg in src:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                await dst.send_str(msg.data)
            else:
                break
        await dst.close()

    try:
        tasks = [asyncio.create_task(pump(upstream, ws)), asyncio.create_task(pump(ws, upstream))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await upstream.close()
        await ws.close()
    return ws


def build_app(client: Client, access: Access, sample_interval: float = 10.0) -> web.Application:
    """sample_interval: seconds between two samples of the nodes' CPU and memory use (usage.py)."""
    app = web.Application(middlewares=[guard], client_max_size=16 * 1024**2)
    app[ACCESS] = access
    app[CLIENT] = client
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/login", login)
    app.router.add_get("/", index)
    app.router.add_get("/vendor/{name}", vendor)
    app.router.add_static("/static/", WEB / "static")
    add_usage_routes(app, Usage(client, sample_interval))
    for prefix in ("/api", "/apis"):
        app.router.add_route("*", prefix + "{tail:(/.*)?}", proxy)
    return app
