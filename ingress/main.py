"""`pkube ingress`: pkube's ingress controller, with nginx as its data plane.

    pkube ingress --kubeconfig FILE [--http-port 80] [--https-port 443] [--bind-address ADDR]
                  [--state-dir DIR] [--controller-name pkube.io/ingress-nginx] [--node-ip IP]
                  [--nginx PATH] [--worker-user USER] [--min-sync-period 0.1]
                  [--ensure-class pkube]
    pkube ingress --cleanup --state-dir DIR

It watches Ingresses, IngressClasses, Services, EndpointSlices and Secrets, and after each burst of changes
renders one nginx configuration from the Ingresses whose class names this controller (ingress/render.py), has
nginx check it, and reloads nginx gracefully (ingress/nginx.py). Requests go from nginx straight to the ready pod
endpoints; no Python code is in the data path. The Ingresses it implements get the node's address as
status.loadBalancer.ingress. nginx stops with the controller; `--cleanup` stops one left by a killed controller.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import logging
import os
import pwd
import shutil
from pathlib import Path
from typing import Any

from pklib.api.ingress import DEFAULT_INGRESS_CLASS_ANNOTATION, PKUBE_CONTROLLER
from pklib.client import Client
from pklib.component import (ConfigError, add_client_flags, make_client as _make_client, run_until_signalled,
                             setup_logging)
from pklib.errors import ApiError, ConnectionFailed
from pklib.events import EventRecorder
from pklib.files import write_atomic
from pklib.flagtypes import int_in_range
from pklib.informer import Handler, InformerFactory
from pklib.kubeconfig import KubeconfigError, pkube_home
from pklib.resources import ENDPOINTSLICES, INGRESSCLASSES, INGRESSES, SECRETS, SERVICES

from .nginx import Nginx, NginxError, cleanup
from .render import Options, Rendered, render
from pklib.timeouts import wait_for

log = logging.getLogger("ingress")

DEFAULT_CERT = "default.pem"
NGINX_CHECK_PERIOD = 5.0  # seconds between checks that nginx still runs when nothing changes


def _default_worker_user() -> str:
    for name in ("www-data", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkube ingress", description="Serves Ingresses through nginx.")
    add_client_flags(p)
    p.add_argument("--http-port", type=int_in_range(1, 65535, "port"), default=80)
    p.add_argument("--https-port", type=int_in_range(1, 65535, "port"), default=443)
    p.add_argument("--bind-address", default="", help="address nginx listens on (default: every address)")
    p.add_argument("--state-dir", default=None, help="nginx's configuration, certificates and pid file "
                                                     "(default <pkube home>/ingress)")
    p.add_argument("--controller-name", default=PKUBE_CONTROLLER,
                   help="the IngressClass spec.controller this controller implements")
    p.add_argument("--node-ip", default=None, help="address written to the Ingresses' status (default: this "
                                                   "host's address)")
    p.add_argument("--nginx", default=None, help="nginx binary (default: nginx on PATH, else /usr/sbin/nginx)")
    p.add_argument("--worker-user", default=None,
                   help="user nginx's workers run as when started as root (default www-data, else nobody)")
    p.add_argument("--min-sync-period", type=float, default=0.1,
                   help="seconds to gather changes before rendering again")
    p.add_argument("--ensure-class", default="", metavar="NAME",
                   help="create this IngressClass of --controller-name, marked default, when it is missing")
    p.add_argument("--cleanup", action="store_true", help="stop an nginx left by a killed controller, then exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def ensure_default_certificate(path: Path) -> None:
    """The default server's self-signed certificate (ingress-nginx's "Fake Certificate"), made once."""
    if path.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pkube Ingress Controller Fake Certificate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_atomic(path, pem, mode=0o600)


class IngressController:
    def __init__(self, client: Client, config: argparse.Namespace, nginx: Nginx, options: Options, node_ip: str):
        self.client = client
        self.nginx = nginx
        self.options = options
        self.node_ip = node_ip
        self.min_sync_period = config.min_sync_period
        self.informers = InformerFactory(client)
        self.ingresses = self.informers.informer(INGRESSES)
        self.classes = self.informers.informer(INGRESSCLASSES)
        self.services = self.informers.informer(SERVICES)
        self.slices = self.informers.informer(ENDPOINTSLICES)
        self.secrets = self.informers.informer(SECRETS)
        self.dirty = asyncio.Event()
        self.applied = ""  # the configuration nginx runs
        self.recorder = EventRecorder(client, "pkube-ingress")
        self.reported: set[tuple[str, str, str]] = set()  # (uid, reason, message) of the problems already told
        for inf in (self.ingresses, self.classes, self.services, self.slices, self.secrets):
            inf.add_handler(Handler(self._changed, lambda o, n: self._changed(n), self._changed))

    def _changed(self, _: Any) -> None:
        self.dirty.set()  # handlers only flag: one render per burst of changes

    def render(self) -> Rendered:
        return render(self.ingresses.store.list(), self.classes.store.list(), self.services.store.list(),
                      self.slices.store.list(), self.secrets.store.list(), self.options)

    async def sync(self) -> None:
        rendered = self.render()
        current = set()
        for ing, reason, message in rendered.problems:
            key = ((ing.get("metadata") or {}).get("uid", ""), reason, message)
            current.add(key)
            if key not in self.reported:  # once per problem, not at every render
                log.warning("ingress %s/%s: %s", ing["metadata"].get("namespace"), ing["metadata"]["name"], message)
                self.recorder.warning({**ing, "kind": "Ingress", "apiVersion": INGRESSES.api_version}, reason, message)
        self.reported = current
        if rendered.config != self.applied or not self.nginx.running():
            if not await self.nginx.apply(rendered):
                return
            self.applied = rendered.config
            log.info("nginx configured for %d ingresses", len(rendered.served))
        await self.write_status(rendered.served)

    async def write_status(self, served: list[dict[str, Any]]) -> None:
        want = [{"ip": self.node_ip}]
        for ing in served:
            balancer = (ing.get("status") or {}).get("loadBalancer") or {}
            if balancer.get("ingress") == want:
                continue
            body = copy.deepcopy(ing)
            body.setdefault("status", {})["loadBalancer"] = {"ingress": want}
            try:
                await self.client.update_status(INGRESSES, body)
            except ApiError as e:  # a conflict or a deleted Ingress: the watch brings the news, and a new sync
                log.debug("status of %s/%s: %s", ing["metadata"].get("namespace"), ing["metadata"]["name"], e)

    async def loop(self) -> None:
        while True:
            try:
                await wait_for(self.dirty.wait(), NGINX_CHECK_PERIOD)
            except asyncio.TimeoutError:
                if self.nginx.running():
                    continue
                log.warning("nginx exited; starting it again")
            await asyncio.sleep(self.min_sync_period)
            self.dirty.clear()
            try:
                await self.sync()
            except NginxError as e:
                log.error("%s", e)
                self.dirty.set()
                await asyncio.sleep(1)


async def ensure_class(client: Client, name: str, controller: str) -> None:
    """The controller's own IngressClass, marked default (what `pkctl cluster up` wants); an existing one is kept as
    the user left it."""
    body = {"apiVersion": INGRESSCLASSES.api_version, "kind": "IngressClass",
            "metadata": {"name": name, "annotations": {DEFAULT_INGRESS_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": controller}}
    try:
        await client.create(INGRESSCLASSES, body)
        log.info("created the default IngressClass %s", name)
    except ApiError as e:
        if e.code != 409:
            raise


def make_client(config: argparse.Namespace) -> Client:
    return _make_client(config, "pkube-ingress")


def _state_dir(config: argparse.Namespace) -> Path:
    return Path(config.state_dir) if config.state_dir else pkube_home() / "ingress"


def _options(config: argparse.Namespace, nginx: Nginx) -> Options:
    user = config.worker_user if config.worker_user is not None else _default_worker_user()
    return Options(http_port=config.http_port, https_port=config.https_port, bind=config.bind_address,
                   certs_dir=str(nginx.certs_dir), default_cert=str(nginx.certs_dir / DEFAULT_CERT),
                   controller=config.controller_name, worker_user=user if os.geteuid() == 0 else "",
                   pid_file=str(nginx.pid_file), temp_dir=str(nginx.dir / "tmp"))


async def run(config: argparse.Namespace, ready: asyncio.Event) -> None:
    """Serve until cancelled; `ready` is set once nginx runs the configuration of the filled caches."""
    binary = config.nginx or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(binary, os.X_OK):
        raise ConfigError(f"nginx not found at {binary} (install the Debian package nginx-light)")
    if config.http_port == config.https_port:
        raise ConfigError("--http-port and --https-port must differ")
    nginx = Nginx(binary, _state_dir(config).absolute())
    nginx.prepare()
    ensure_default_certificate(nginx.certs_dir / DEFAULT_CERT)
    node_ip = config.node_ip
    if not node_ip:
        from pklib.hostnet import host_ip
        node_ip = await asyncio.to_thread(host_ip)
    client = make_client(config)
    controller = IngressController(client, config, nginx, _options(config, nginx), node_ip)
    recorder: asyncio.Task[None] | None = None
    try:
        if config.ensure_class:
            await ensure_class(client, config.ensure_class, config.controller_name)
        recorder = asyncio.create_task(controller.recorder.run())
        controller.informers.start()
        await controller.informers.wait_synced()
        controller.dirty.clear()
        try:
            await controller.sync()
        except NginxError as e:
            raise ConfigError(str(e)) from None
        if not nginx.running():
            raise ConfigError(f"nginx refused its configuration; see {nginx.error_log}")
        log.info("serving HTTP on %s, HTTPS on %s", config.http_port, config.https_port)
        ready.set()
        await controller.loop()
    finally:
        if recorder is not None:
            recorder.cancel()
        await nginx.stop()
        await controller.informers.stop()
        await client.close()


# What ends the process with one `error: ...` line instead of a traceback (also used by `pkube group`).
REPORT: tuple[type[BaseException], ...] = (ConfigError, KubeconfigError, ConnectionFailed, NginxError, ApiError,
                                          OSError)


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_args(argv)
    setup_logging(config.verbose)
    if config.cleanup:
        problems = cleanup(_state_dir(config).absolute())
        for p in problems:
            print(f"error: {p}")
        return 1 if problems else 0
    return run_until_signalled(lambda: run(config, asyncio.Event()), report=REPORT)
