"""Client of the OCI distribution API v2: pull and push.

Plain urllib plus a thread pool: a pull is a handful of requests and a few
concurrent blob streams, which needs no event loop, and keeps the store's API
synchronous for both the CLI and the kubelet (which calls it from a thread).

Every blob is verified against its digest before it enters the store; partial
downloads stay in tmp/download-<hex> and resume with a Range request.
"""
from __future__ import annotations

import fcntl
import hashlib
import http.client
import ipaddress
import logging
import os
import time
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from images import reference
from images.archive import select_platform
from images.auth import Challenge, Credentials, Keychain, credentials_for, parse_challenge
from images.errors import ImageError, ImageNotFound, RegistryError
from images.image import Image, Layer, host_arch, parse_manifest
from images.mirrors import HostConfig, RegistriesConfig, load as load_registries
from images.layout import INDEX_TYPES, MANIFEST_TYPES, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, \
    MT_OCI_MANIFEST, check_digest, sha256_digest

if TYPE_CHECKING:
    from images.store import ImageStore

log = logging.getLogger("images")
ACCEPT = ", ".join((MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST))
_MAX_MANIFEST = 4 * 1024 * 1024
_CHUNK = 1 << 20
_ATTEMPTS = 3
CONNECT_TIMEOUT = 5.0


class Reporter(Protocol):
    def line(self, text: str) -> None: ...
    def progress(self, digest: str, done: int, total: int) -> None: ...


class QuietReporter:
    def line(self, text: str) -> None:
        pass

    def progress(self, digest: str, done: int, total: int) -> None:
        pass


@dataclass
class PullResult:
    image: Image
    downloaded: list[str] = field(default_factory=list)   # layer digests fetched over the network
    present: list[str] = field(default_factory=list)      # layer digests that were already in the store
    bytes: int = 0


class _KeepAuthOnSameHost(urllib.request.HTTPRedirectHandler):
    """Blob GETs may redirect to storage (S3, a CDN) that rejects the registry's Authorization header."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo bounded by CONNECT_TIMEOUT: with a DNS server that does not answer, the resolver's own
    retries take tens of seconds (the lookup goes on in its daemon thread, its answer unused)."""
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as e:
            answer.append(e)
    worker = threading.Thread(target=lookup, name="registry-resolve", daemon=True)
    worker.start()
    worker.join(CONNECT_TIMEOUT)
    if not answer:
        raise OSError(f"timed out resolving {host} after {CONNECT_TIMEOUT:g}s")
    if isinstance(answer[0], OSError):
        raise answer[0]
    return list(answer[0])


def _create_connection(address: tuple[str, int], timeout: Any = None,
                       source_address: tuple[str, int] | None = None) -> socket.socket:
    last: OSError | None = None
    for family, type_, proto, _, sockaddr in _resolve(*address):
        sock = socket.socket(family, type_, proto)
        try:
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            sock.close()
            last = e
    raise last or OSError(f"{address[0]} has no address")


class _ConnectTimeout(http.client.HTTPConnection):
    """Resolving and connecting get CONNECT_TIMEOUT, not the read timeout: an unreachable registry fails in
    seconds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _create_connection

    def connect(self) -> None:
        read_timeout = self.timeout
        self.timeout = min(read_timeout, CONNECT_TIMEOUT) if read_timeout else CONNECT_TIMEOUT
        try:
            super().connect()
        finally:
            self.timeout = read_timeout
        self.sock.settimeout(read_timeout)


class _HTTPSConnection(_ConnectTimeout, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_ConnectTimeout, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


def _is_local(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    def __init__(self, registry: str, insecure: bool = False, credentials: Credentials | None = None,
                 docker_config: Path | None = None, timeout: float = 30.0, url: str | None = None,
                 host_config: HostConfig | None = None):
        """`url`: where to reach it (a mirror's endpoint), by default https://registry (http on loopback).
        Credentials: `credentials`, else the registries.yaml `host_config`'s, else the Docker config.json's."""
        self.name = registry
        host = "registry-1.docker.io" if registry == "docker.io" else registry
        host_config = host_config or HostConfig()
        # Like Docker, loopback registries are plain http without asking (unless registries.yaml gives them TLS
        # settings); others need --insecure-registry.
        plain = insecure or (_is_local(host) and host_config.ssl_context() is None)
        self.base = url or f"{'http' if plain else 'https'}://{host}"
        self.credentials = credentials or host_config.credentials or credentials_for(registry, docker_config)
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_KeepAuthOnSameHost(), _HTTPHandler(),
                                                   _HTTPSHandler(context=host_config.ssl_context()))
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._lock = threading.Lock()

    # ---- transport -----------------------------------------------------------
    def _open(self, req: urllib.request.Request) -> Any:
        try:
            return self._opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            return e  # an HTTP answer is a response too; callers look at .status
        except urllib.error.URLError as e:
            raise RegistryError(f"cannot reach registry {self.name} at {self.base}: {e.reason}") from None
        except (socket.timeout, ConnectionError, OSError) as e:
            raise RegistryError(f"cannot reach registry {self.name} at {self.base}: {e}") from None

    def request(self, method: str, path_or_url: str, scope: str, headers: dict[str, str] | None = None,
                data: bytes | IO[bytes] | None = None) -> Any:
        url = path_or_url if "://" in path_or_url else self.base + path_or_url
        for attempt in range(2):
            h = dict(headers or {})
            auth = self._auth_header(scope)
            if auth:
                h["Authorization"] = auth
            if data is not None and hasattr(data, "seek"):
                data.seek(0)  # type: ignore[union-attr]
            resp = self._open(urllib.request.Request(url, data=data, headers=h, method=method))
            if resp.status != 401 or attempt == 1:
                return resp
            challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            resp.close()
            self._authenticate(challenge, scope)
        raise AssertionError("unreachable")

    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            if scope in self._tokens:
                return f"Bearer {self._tokens[scope]}"
            if self._basic and self.credentials:
                return self.credentials.basic_header()
        return None

    def _authenticate(self, challenge: Challenge, scope: str) -> None:
        if challenge.scheme == "basic":
            if not self.credentials:
                raise RegistryError(f"registry {self.name} requires authentication: add credentials for it to "
                                    "~/.docker/config.json (or $DOCKER_CONFIG/config.json)")
            with self._lock:
                self._basic = True
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise RegistryError(f"registry {self.name} asks for an unsupported authentication scheme "
                                f"{challenge.scheme!r}")
        query = {"scope": challenge.params.get("scope") or scope} if challenge.params.get("scope") or scope else {}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        url = challenge.params["realm"] + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials else {}
        resp = self._open(urllib.request.Request(url, headers=headers))
        body = resp.read()
        if resp.status in (401, 403):
            raise RegistryError(f"authentication to registry {self.name} failed: "
                                + ("wrong username or password" if self.credentials else "no credentials configured"))
        if resp.status != 200:
            raise RegistryError(f"token service of registry {self.name} answered HTTP {resp.status}")
        try:
            doc = orjson.loads(body)
            token = doc.get("token") or doc["access_token"]
        except (orjson.JSONDecodeError, KeyError, AttributeError):
            raise RegistryError(f"token service of registry {self.name} sent no token") from None
        with self._lock:
            self._tokens[scope] = token

    def fail(self, resp: Any, what: str) -> ImageError:
        """A clear error from a failed response (the registry's own error codes when it sent them)."""
        try:
            errors = orjson.loads(resp.read(65536)).get("errors") or []
        except (orjson.JSONDecodeError, AttributeError, OSError):
            errors = []
        codes = {e.get("code") for e in errors if isinstance(e, dict)}
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        if resp.status == 404 or codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"}:
            return ImageNotFound(f"manifest unknown: {what} not found in registry {self.name}")
        if resp.status == 401:
            return RegistryError(f"authentication required for {what} on registry {self.name}: {detail or 'unauthorized'}")
        if resp.status == 403:
            return RegistryError(f"access to {what} denied by registry {self.name}: {detail or 'forbidden'}")
        return RegistryError(f"registry {self.name} answered HTTP {resp.status} for {what}" + (f": {detail}" if detail else ""))

    def login(self) -> None:
        """Check the credentials as `docker login` does: GET /v2/ through the registry's challenge."""
        if not self.credentials:
            raise RegistryError(f"no credentials for registry {self.name}")
        resp = self.request("GET", "/v2/", "")
        resp.close()
        if resp.status == 401:
            raise RegistryError(f"login to {self.name} failed: unauthorized: incorrect username or password")
        if resp.status != 200:
            raise self.fail(resp, "/v2/")

    # ---- reading ---------------------------------------------------------------
    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest, verified against the digest when asked by digest."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", f"repository:{repo}:pull", {"Accept": ACCEPT})
        if resp.status != 200:
            raise self.fail(resp, f"{self.name}/{repo}:{ref}" if ":" not in ref else f"{self.name}/{repo}@{ref}")
        body = resp.read(_MAX_MANIFEST + 1)
        if len(body) > _MAX_MANIFEST:
            raise RegistryError(f"manifest {repo}:{ref} is larger than {_MAX_MANIFEST} bytes")
        digest = sha256_digest(body)
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(f"manifest {repo}@{ref}: the registry sent content with digest {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            media_type = orjson.loads(body).get("mediaType") or media_type
        except (orjson.JSONDecodeError, AttributeError):
            raise RegistryError(f"manifest {repo}:{ref} is not valid JSON") from None
        return body, media_type, digest

    def download_blob(self, store: "ImageStore", repo: str, digest: str, size: int, reporter: Reporter) -> int:
        """Fetch a blob into the store (resuming a partial download); returns bytes transferred."""
        partial = store.layout.tmp / f"download-{digest.split(':', 1)[1]}"
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another process fetching the same blob: wait for it
            if store.layout.has_blob(digest):
                os.unlink(partial)
                return 0
            transferred = 0
            last_error: Exception | None = None
            for _ in range(_ATTEMPTS):
                try:
                    transferred += self._fetch_into(fd, repo, digest, size, reporter)
                    break
                except (OSError, RegistryError) as e:  # a dropped connection: resume from what we have
                    last_error = e
            else:
                raise RegistryError(f"downloading blob {digest} from {self.name} failed: {last_error}")
            h = hashlib.sha256()
            os.lseek(fd, 0, os.SEEK_SET)
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
            if "sha256:" + h.hexdigest() != digest:
                os.unlink(partial)
                raise RegistryError(f"blob {digest} from {self.name} failed digest verification "
                                    f"(got sha256:{h.hexdigest()})")
            store.layout.adopt_blob_file(partial, digest)
            return transferred
        finally:
            os.close(fd)

    def _fetch_into(self, fd: int, repo: str, digest: str, size: int, reporter: Reporter) -> int:
        have = os.fstat(fd).st_size
        if size and have >= size:
            have = 0  # complete but failed to verify earlier, or bigger than it should be: start over
            os.ftruncate(fd, 0)
        headers = {"Range": f"bytes={have}-"} if have else {}
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull", headers)
        if resp.status == 200:
            have = 0
            os.ftruncate(fd, 0)
        elif resp.status != 206:
            raise self.fail(resp, f"blob {digest}")
        os.lseek(fd, have, os.SEEK_SET)
        transferred = 0
        with resp:
            while chunk := resp.read(_CHUNK):
                os.write(fd, chunk)
                transferred += len(chunk)
                reporter.progress(digest, have + transferred, size)
        return transferred

    # ---- writing ---------------------------------------------------------------
    def has_blob(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull,push")
        resp.close()
        return resp.status == 200

    def upload_blob(self, repo: str, digest: str, path: Path) -> None:
        scope = f"repository:{repo}:pull,push"
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope, {"Content-Length": "0"}, b"")
        if resp.status != 202:
            raise self.fail(resp, f"upload to {repo}")
        location = urllib.parse.urljoin(self.base + "/", resp.headers["Location"])
        resp.close()
        url = location + ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        with open(path, "rb") as f:
            resp = self.request("PUT", url, scope, {"Content-Type": "application/octet-stream",
                                                    "Content-Length": str(os.fstat(f.fileno()).st_size)}, f)
        if resp.status != 201:
            raise self.fail(resp, f"blob {digest}")
        resp.close()

    def put_manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> str:
        resp = self.request("PUT", f"/v2/{repo}/manifests/{tag}", f"repository:{repo}:pull,push",
                            {"Content-Type": media_type}, body)
        if resp.status != 201:
            raise self.fail(resp, f"{repo}:{tag}")
        resp.close()
        return sha256_digest(body)


def pull(store: "ImageStore", ref_text: str, insecure: bool = False, reporter: Reporter | None = None,
         docker_config: Path | None = None, max_workers: int = 3, keychain: Keychain | None = None,
         registries: RegistriesConfig | None = None) -> PullResult:
    """Pull through the registry's mirrors (registries.yaml), then from the registry itself. `keychain`:
    credentials by registry (a pod's pull secrets), tried before the mirror config's and config.json's."""
    ref = reference.parse(ref_text)
    registries = registries if registries is not None else load_registries(store.registries_config)
    errors: list[ImageError] = []
    for endpoint in registries.endpoints(ref.registry):
        reg = Registry(endpoint.host, insecure, (keychain or {}).get(endpoint.host), docker_config,
                       url=endpoint.url, host_config=registries.host(endpoint.host))
        try:
            return _pull_from(store, reg, ref, reporter or QuietReporter(), max_workers)
        except ImageError as e:
            if endpoint.url is not None:
                log.info("image=%s action=pull mirror=%s error=%s", ref, endpoint.url, e)
            errors.append(e)
    raise errors[-1]


def _pull_from(store: "ImageStore", reg: Registry, ref: reference.Reference, reporter: Reporter,
               max_workers: int) -> PullResult:
    began = time.monotonic()
    with store.layout.using():
        body, media_type, digest = reg.get_manifest(ref.repository, ref.digest or ref.tag or "latest")
        if media_type in INDEX_TYPES:
            chosen = select_platform(orjson.loads(body).get("manifests") or [])
            if chosen is None:
                raise RegistryError(f"{ref} has no linux/{host_arch()} image")
            body, media_type, digest = reg.get_manifest(ref.repository, chosen["digest"])
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"{ref}: unsupported manifest type {media_type!r} (schema 1 images are not supported)")
        manifest = orjson.loads(body)
        reporter.line(f"Pulling {ref} ({digest})")
        transferred = 0
        downloaded: list[str] = []
        config_desc = manifest.get("config") or {}
        config_digest = check_digest(config_desc.get("digest", ""))
        if not store.layout.has_blob(config_digest):
            transferred += reg.download_blob(store, ref.repository, config_digest, int(config_desc.get("size", 0)),
                                             reporter)
        layers = parse_manifest(str(ref), digest, manifest, store.layout.read_json(config_digest)).layers
        unique_layers = list({layer.digest: layer for layer in layers}.values())
        present = {layer.digest for layer in unique_layers if store.layout.has_blob(layer.digest)}

        def fetch(layer: Layer) -> int:
            n = 0
            if layer.digest not in present:
                n = reg.download_blob(store, ref.repository, layer.digest, layer.size, reporter)
            store.ensure_layer(layer)  # unpack while other layers are still downloading
            return n
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="pull") as pool:
            futures = [(layer, pool.submit(fetch, layer)) for layer in unique_layers]
            for layer, fut in futures:
                transferred += fut.result()
                if layer.digest not in present:
                    downloaded.append(layer.digest)
        img = store.store_manifest(body, digest)
        img.name = store.set_name(str(ref), digest, allow_digest=True)
        reporter.line(f"Pulled {img.name} (image ID {img.id})")
        log.info("image=%s action=pull digest=%s layers_downloaded=%d bytes=%d seconds=%.2f", img.name, digest,
                 len(downloaded), transferred, time.monotonic() - began)
        return PullResult(img, downloaded, sorted(present), transferred)


def push(store: "ImageStore", ref_text: str, dest: str | None = None, insecure: bool = False,
         reporter: Reporter | None = None, docker_config: Path | None = None) -> str:
    """Push a local image (optionally under another name); returns the manifest digest."""
    reporter = reporter or QuietReporter()
    img = store.get(ref_text)
    target = reference.parse(dest or img.name or ref_text)
    if target.digest:
        raise RegistryError(f"cannot push to a digest reference {target}; use NAME:TAG")
    reg = Registry(target.registry, insecure, docker_config=docker_config,
                   host_config=load_registries(store.registries_config).host(target.registry))
    for digest in [*(layer.digest for layer in img.layers), img.config_digest]:
        if reg.has_blob(target.repository, digest):
            reporter.line(f"Blob {digest.split(':', 1)[1][:12]} already exists")
            continue
        reporter.line(f"Pushing blob {digest.split(':', 1)[1][:12]}")
        reg.upload_blob(target.repository, digest, store.layout.blob_path(digest))
    digest = reg.put_manifest(target.repository, target.tag or "latest", store.layout.read_blob(img.manifest_digest),
                              img.manifest_media_type)
    reporter.line(f"Pushed {target} ({digest})")
    log.info("image=%s action=push digest=%s", target, digest)
    return digest
