"""Ingresses, their Services' EndpointSlices and TLS Secrets → one nginx configuration (pure: no I/O).

What Kubernetes' Ingress means, in nginx terms:
- each rule host is a `server` (a `*.example.com` wildcard matches exactly one more label); rules without a host
  and the Ingresses' defaultBackend go to the catch-all default server;
- pathType Exact is `location = /p`, Prefix `/p` matches `/p` and `/p/...` by whole path elements
  (`location = /p` plus `location /p/`), ImplementationSpecific is nginx's own prefix match (`location /p`); the
  longest match wins, an exact one before any prefix (nginx's order is Kubernetes' precedence). When Ingresses
  disagree about the same host and path, the oldest Ingress wins (as ingress-nginx does);
- a backend is an upstream of its Service port's ready endpoints (pod IP:target port from the EndpointSlices),
  so traffic skips the ClusterIP; no ready endpoint answers 503, a resource backend 404;
- a host in an Ingress' `tls` section gets an HTTPS server with its `kubernetes.io/tls` Secret (SNI), and its
  plain-HTTP requests a 308 redirect to HTTPS. A Secret that is missing or not a valid certificate and key leaves
  the host on the controller's default certificate (ingress-nginx's behaviour) with a warning.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from pklib.api.ingress import class_name, tls_hosts
from pklib.api.wellknown import SERVICE_NAME_LABEL

Obj = dict[str, Any]
TLS_SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True)
class Options:
    http_port: int
    https_port: int
    bind: str                # the address nginx listens on ("" = every address)
    certs_dir: str           # where the TLS files named in Rendered.certs are written
    default_cert: str        # the default server's certificate (+ key) file
    controller: str          # the IngressClass controller name this controller implements
    worker_user: str = ""    # nginx workers' user ("" = nginx's default; only applies when started as root)
    pid_file: str = "nginx.pid"
    temp_dir: str = "tmp"    # request bodies and proxied responses are never spooled, but nginx wants the paths
    worker_processes: str = "auto"


@dataclass
class Rendered:
    config: str
    certs: dict[str, bytes] = field(default_factory=dict)  # file name in certs_dir -> PEM (certificate + key)
    served: list[Obj] = field(default_factory=list)        # the Ingresses this configuration implements
    warnings: list[str] = field(default_factory=list)
    # (Ingress, reason, message) of what the Ingress asked for and did not get, for Warning Events.
    problems: list[tuple[Obj, str, str]] = field(default_factory=list)


@dataclass
class _Route:
    target: str  # an nginx directive: proxy_pass ... / return ...
    owner: str   # namespace/name of the Ingress that set it


@dataclass
class _Server:
    host: str
    locations: dict[str, _Route] = field(default_factory=dict)  # "= /p" / "/p/" -> route
    cert: str = ""  # certificate file; "" = plain HTTP only


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def serves(ingress: Obj, classes: dict[str, Obj], controller: str) -> bool:
    """Whether the controller named `controller` implements this Ingress: its class names that controller."""
    cls = classes.get(class_name(ingress))
    return cls is not None and (cls.get("spec") or {}).get("controller") == controller


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


ROOT = _quote("/")  # the location every server ends with


def _server_name(host: str) -> str:
    if host.startswith("*."):
        return "~^[^.]+" + re.escape(host[1:]) + "$"
    return host


def _locations(path_type: str, path: str) -> list[str]:
    if path_type == "Exact":
        return ["= " + _quote(path)]
    if path_type == "Prefix":
        trimmed = path.rstrip("/")
        return [ROOT] if not trimmed else ["= " + _quote(trimmed), _quote(trimmed + "/")]
    return [_quote(path or "/")]


class _Endpoints:
    """Ready endpoints of Service ports, from the Services and their EndpointSlices."""

    def __init__(self, services: Iterable[Obj], slices: Iterable[Obj]):
        self.services = {_key(s): s for s in services}
        self.slices: dict[str, list[Obj]] = {}
        for s in slices:
            svc = ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if svc and s.get("addressType", "IPv4") == "IPv4":
                self.slices.setdefault(f"{(s.get('metadata') or {}).get('namespace', '')}/{svc}", []).append(s)

    def of(self, namespace: str, backend: Obj) -> tuple[str, list[str]]:
        """(upstream name, sorted ip:port list) of a service backend; the list is empty when nothing is ready."""
        name = backend.get("name", "")
        port_ref = backend.get("port") or {}
        wanted = port_ref.get("number") or port_ref.get("name") or ""
        upstream = f"{namespace}-{name}-{wanted}"
        svc = self.services.get(f"{namespace}/{name}")
        if svc is None:
            return upstream, []
        port = next((p for p in (svc.get("spec") or {}).get("ports") or []
                     if (port_ref.get("number") and p.get("port") == port_ref["number"])
                     or (port_ref.get("name") and p.get("name") == port_ref["name"])), None)
        if port is None:
            return upstream, []
        port_name = port.get("name") or ""
        out: set[str] = set()
        for s in self.slices.get(f"{namespace}/{name}", []):
            target = next((p.get("port") for p in s.get("ports") or [] if (p.get("name") or "") == port_name), None)
            if not target:
                continue
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                out.update(f"{a}:{target}" for a in ep.get("addresses") or [])
        return upstream, sorted(out)


def tls_pem(secret: Obj | None) -> tuple[bytes | None, str]:
    """(certificate + key PEM, "") of a kubernetes.io/tls Secret, or (None, why it cannot be used)."""
    if secret is None:
        return None, "not found"
    if secret.get("type") != TLS_SECRET_TYPE:
        return None, f"is not of type {TLS_SECRET_TYPE}"
    data = secret.get("data") or {}
    try:
        cert, key = base64.b64decode(data.get("tls.crt", "")), base64.b64decode(data.get("tls.key", ""))
    except (binascii.Error, ValueError):
        return None, "has data that is not base64"
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    try:
        x509.load_pem_x509_certificate(cert)
        load_pem_private_key(key, None)
    except (ValueError, TypeError) as e:
        return None, f"has no valid certificate and key in tls.crt/tls.key ({e})"
    return cert.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n", ""


def render(ingresses: Iterable[Obj], classes: Iterable[Obj], services: Iterable[Obj], slices: Iterable[Obj],
           secrets: Iterable[Obj], opts: Options) -> Rendered:
    by_class = {(c.get("metadata") or {}).get("name", ""): c for c in classes}
    mine = sorted((i for i in ingresses if serves(i, by_class, opts.controller)
                   and not (i.get("metadata") or {}).get("deletionTimestamp")),
                  key=lambda i: ((i.get("metadata") or {}).get("creationTimestamp") or "", _key(i)))
    secrets_by_key = {_key(s): s for s in secrets}
    endpoints = _Endpoints(services, slices)
    out = Rendered(config="", served=mine)
    upstreams: dict[str, list[str]] = {}
    default = _Server("")
    servers: dict[str, _Server] = {}

    def target(namespace: str, backend: Obj) -> str:
        if backend.get("service") is None:
            return "return 404;"
        name, addresses = endpoints.of(namespace, backend["service"])
        if not addresses:
            return "return 503;"
        upstreams[name] = addresses
        return f"proxy_pass http://{_quote(name)[1:-1]};"

    for ing in mine:
        namespace, key = (ing.get("metadata") or {}).get("namespace", ""), _key(ing)
        spec = ing.get("spec") or {}
        tls = tls_hosts(ing)
        for rule in spec.get("rules") or []:
            host = rule.get("host") or ""
            server = servers.setdefault(host, _Server(host)) if host else default
            for entry in (rule.get("http") or {}).get("paths") or []:
                if any(ord(c) < 32 or ord(c) == 127 for c in entry.get("path", "")):
                    problem = f"path {entry.get('path')!r} has control characters: skipped"
                    out.warnings.append(f"ingress {key}: {problem}")
                    out.problems.append((ing, "InvalidPath", problem))
                    continue
                route = _Route(target(namespace, entry.get("backend") or {}), key)
                for loc in _locations(entry.get("pathType", ""), entry.get("path", "")):
                    server.locations.setdefault(loc, route)
            if host and host in tls and not server.cert:
                server.cert = _certificate(ing, tls[host], secrets_by_key, opts, out)
        backend = spec.get("defaultBackend")
        if backend is not None:
            route = _Route(target(namespace, backend), key)
            default.locations.setdefault(ROOT, route)
            for host in {r.get("host") for r in spec.get("rules") or [] if r.get("host")}:
                servers[host].locations.setdefault(ROOT, route)
    out.config = _config(opts, upstreams, default, list(servers.values()))
    return out


def _certificate(ing: Obj, secret_name: str, secrets: dict[str, Obj], opts: Options, out: Rendered) -> str:
    namespace = (ing.get("metadata") or {}).get("namespace", "")
    pem, problem = tls_pem(secrets.get(f"{namespace}/{secret_name}"))
    if pem is None:
        out.warnings.append(f"secret {namespace}/{secret_name} {problem}: using the default certificate")
        out.problems.append((ing, "InvalidTLSSecret", f"Secret {namespace}/{secret_name} {problem}: its hosts are "
                                                      "served with the default certificate"))
        return opts.default_cert
    name = hashlib.sha256(pem).hexdigest()[:32] + ".pem"
    out.certs[name] = pem
    return f"{opts.certs_dir}/{name}"


def _listen(opts: Options, port: int) -> str:
    return f"{opts.bind}:{port}" if opts.bind else str(port)


def _https_url(opts: Options) -> str:
    port = "" if opts.https_port == 443 else f":{opts.https_port}"
    return f"https://$host{port}$request_uri"


def _server_block(opts: Options, server: _Server, https: bool, default: bool = False) -> list[str]:
    flag = " default_server" if default else ""
    lines = ["  server {"]
    if not https or default:
        lines.append(f"    listen {_listen(opts, opts.http_port)}{flag};")
    if https:
        lines += [f"    listen {_listen(opts, opts.https_port)} ssl{flag};",
                  f"    ssl_certificate {_quote(server.cert or opts.default_cert)};",
                  f"    ssl_certificate_key {_quote(server.cert or opts.default_cert)};"]
    lines.append(f"    server_name {_quote(_server_name(server.host)) if server.host else '_'};")
    locations = dict(server.locations)
    locations.setdefault(ROOT, _Route("return 404;", ""))
    for loc in sorted(locations):
        route = locations[loc]
        lines.append(f"    location {loc} {{ {route.target} }}")
    lines.append("  }")
    return lines


def _config(opts: Options, upstreams: dict[str, list[str]], default: _Server, servers: list[_Server]) -> str:
    lines = ["# Written by pkube's ingress controller; edits are overwritten.",
             *([f"user {opts.worker_user};"] if opts.worker_user else []),
             f"worker_processes {opts.worker_processes};",
             f"pid {_quote(opts.pid_file)};",
             "daemon off;",
             "events { worker_connections 4096; }",
             "http {",
             "  access_log off;",
             f"  client_body_temp_path {_quote(opts.temp_dir + '/body')};",
             f"  proxy_temp_path {_quote(opts.temp_dir + '/proxy')};",
             "  server_tokens off;",
             "  server_names_hash_bucket_size 128;",
             "  server_names_hash_max_size 4096;",
             "  proxy_http_version 1.1;",
             '  proxy_set_header Connection "";',
             "  proxy_set_header Host $host;",
             "  proxy_set_header X-Real-IP $remote_addr;",
             "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
             "  proxy_set_header X-Forwarded-Host $host;",
             "  proxy_set_header X-Forwarded-Proto $scheme;",
             "  proxy_connect_timeout 5s;",
             "  proxy_next_upstream error timeout http_502 http_503;",
             # Workers never write files: nothing is spooled to disk (their temp directories may be unreachable).
             "  proxy_max_temp_file_size 0;",
             "  proxy_request_buffering off;",
             "  ssl_protocols TLSv1.2 TLSv1.3;",
             "  ssl_session_cache shared:pkube_ssl:10m;"]
    for name in sorted(upstreams):
        lines.append(f"  upstream {name} {{")
        lines += [f"    server {address} max_fails=1 fail_timeout=2s;" for address in upstreams[name]]
        lines += ["    keepalive 32;", "  }"]
    lines += _server_block(opts, default, https=True, default=True)
    for server in sorted(servers, key=lambda s: s.host):
        lines += _server_block(opts, server, https=False) if not server.cert else \
            _redirect_block(opts, server) + _server_block(opts, server, https=True)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _redirect_block(opts: Options, server: _Server) -> list[str]:
    return ["  server {",
            f"    listen {_listen(opts, opts.http_port)};",
            f"    server_name {_quote(_server_name(server.host))};",
            f"    location / {{ return 308 {_https_url(opts)}; }}",
            "  }"]
