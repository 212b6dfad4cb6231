"""GETs over kept-alive connections, for the supervisor's health probes.

The supervisor asks the same few servers (etcd, the apiserver, the control-plane process, the proxy) every 10 s.
A new connection per probe meant a TLS handshake per probe, which cost more CPU than the probe itself, in the
supervisor and in the server: most of an idle cluster's probing work. One idle connection per server is kept and
reused; one that the server has closed meanwhile (it restarted, or timed the connection out) is replaced once.
Probes run in worker threads, so the idle connections are handed out under a lock.
"""
from __future__ import annotations

import http.client
import ssl
import threading
import urllib.parse

_lock = threading.Lock()
# (scheme, host, port) -> the TLS context it was made with, and the idle connection
_idle: dict[tuple[str, str, int], tuple[ssl.SSLContext | None, http.client.HTTPConnection]] = {}


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 1.0,
        tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """(status, body) of GET `url`. Raises OSError (or http.client.HTTPException) when no answer came."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    key = (parts.scheme, parts.hostname or "", parts.port or (443 if https else 80))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = _take(key, tls)
    while True:
        reused = conn is not None
        if conn is None:
            conn = (http.client.HTTPSConnection(key[1], key[2], timeout=timeout, context=tls) if https
                    else http.client.HTTPConnection(key[1], key[2], timeout=timeout))
        elif conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            if reused:
                conn = None  # closed by the server while idle: once more, on a new connection
                continue
            raise
        if response.will_close:
            conn.close()
        else:
            _give(key, tls, conn)
        return response.status, body


def _take(key: tuple[str, str, int], tls: ssl.SSLContext | None) -> http.client.HTTPConnection | None:
    with _lock:
        kept = _idle.pop(key, None)
    if kept is None:
        return None
    if kept[0] is not tls:  # made with other credentials (a rotated certificate): not for this request
        kept[1].close()
        return None
    return kept[1]


def _give(key: tuple[str, str, int], tls: ssl.SSLContext | None, conn: http.client.HTTPConnection) -> None:
    with _lock:
        old = _idle.pop(key, None)
        _idle[key] = (tls, conn)
    if old is not None:  # two probes of one server at once: keep one connection
        old[1].close()
