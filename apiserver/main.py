"""`pkube apiserver`: flags, startup order (etcd reachable → kinds configured → serve), clean shutdown."""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from urllib.parse import urlparse

from aiohttp import web

from pklib.api.timefmt import parse_duration
from pklib.component import dump_tasks_on_sigusr1, keep_heap_trimmed, run_event_loop
from pklib.flagtypes import non_negative
from pklib.quantity import QuantityError, to_bytes

from . import etcdmaintenance, kinds, repair, shutdown, watchcache
from .app import Config, build_app
from .auth import TokenFileError, load_tokens
from .satokens import KeyFileError, load_private_key, load_public_keys
from .storage.etcd import EtcdStorage, EtcdTLS
from .storage.etcdwatch import SWITCH_INTERVAL
from .tls import kubelet_client_context, tls_context

log = logging.getLogger("apiserver")


class StartupError(RuntimeError):
    """The apiserver cannot start (etcd unreachable, its port taken, a bad range): one line, exit 1."""


# What ends the process with one `error: ...` line instead of a traceback (also used by `pkube group`).
REPORT: tuple[type[BaseException], ...] = (StartupError,)


def parse_args(argv: list[str]) -> Config:
    p = argparse.ArgumentParser(prog="pkube apiserver", description="The pkube API server.")
    p.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="etcd client URLs, comma-separated")
    p.add_argument("--etcd-prefix", default="/registry", help="prefix of every key in etcd")
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--token-auth-file", help='CSV of token,user,uid,"group1,group2": requires bearer tokens')
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument("--watch-bookmark-interval", type=float, default=60.0,
                   help="seconds between BOOKMARK events on watches that allow them")
    p.add_argument("--tls-cert-file", help="serving certificate (PEM, may hold the chain): serve HTTPS")
    p.add_argument("--tls-private-key-file", help="the serving certificate's private key (PEM)")
    p.add_argument("--client-ca-file", help="CA that signs client certificates: a verified certificate "
                   "authenticates its CN as the user, its Os as groups (needs --tls-cert-file)")
    p.add_argument("--etcd-cafile", help="CA of etcd's serving certificate (needed for https:// --etcd-servers)")
    p.add_argument("--etcd-certfile", help="client certificate to present to etcd (PEM)")
    p.add_argument("--etcd-keyfile", help="its private key (PEM)")
    p.add_argument("--kubelet-certificate-authority", help="CA of the kubelets' serving certificates")
    p.add_argument("--kubelet-client-certificate", help="client certificate to present to kubelets (PEM)")
    p.add_argument("--kubelet-client-key", help="its private key (PEM)")
    p.add_argument("--pod-security-default-enforce", default="baseline", choices=("privileged", "baseline", "restricted"),
                   help="Pod Security level enforced (and warned about, and audited) in namespaces without "
                        "pod-security.kubernetes.io labels; privileged turns it off (kube-system is exempt)")
    p.add_argument("--service-account-signing-key-file",
                   help="private key (PEM, RSA or ECDSA) that signs service-account tokens: enables TokenRequest")
    p.add_argument("--service-account-key-file", action="append", default=[],
                   help="public keys (PEM; a private key's public half counts) that verify service-account tokens; "
                        "repeatable (default: the signing key's)")
    p.add_argument("--service-account-issuer", action="append", default=[],
                   help="the issuer (iss) of service-account tokens: the first signs, all are accepted; also the "
                        "API's audience")
    p.add_argument("--advertise-address",
                   help="the address pods reach this apiserver at: the endpoint of the `kubernetes` Service in "
                        "`default`, which is kept only when this is set")
    p.add_argument("--advertise-port", type=int,
                   help="the port behind that address (default --port; a load balancer's when there is one)")
    p.add_argument("--etcd-compaction-interval", type=_duration, default=etcdmaintenance.DEFAULT_COMPACTION_INTERVAL,
                   help="how often etcd's history is compacted to the revision of one interval earlier "
                        "(Go duration, e.g. 5m; 0 disables compaction and defragmentation)")
    p.add_argument("--etcd-defrag-threshold", type=_bytes, default=etcdmaintenance.DEFAULT_DEFRAG_THRESHOLD,
                   help="free space in an etcd member's file (e.g. 100Mi) past which it is defragmented, once the "
                        "file is also twice its data")
    p.add_argument("--event-ttl", type=_duration, default=3600.0,
                   help="how long Events are kept after their last update (Go duration, default 1h)")
    p.add_argument("--allocator-repair-interval", type=_duration, default=repair.DEFAULT_INTERVAL,
                   help="how often leaked ClusterIPs/NodePorts are released and missing ones recorded "
                        "(Go duration, default 3m; also once at start)")
    p.add_argument("--watch-cache-max-bytes", type=_bytes, default=watchcache.HISTORY_BYTES,
                   help="most bytes of JSON the watch cache keeps in one resource's event history (e.g. 32Mi; "
                        f"it also keeps at most {watchcache.HISTORY} events): a watch resumed from an older "
                        "resourceVersion gets 410 Expired and re-lists")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    a = p.parse_args(argv)
    if a.event_ttl <= 0:
        p.error("--event-ttl must be positive")
    if a.allocator_repair_interval <= 0:
        p.error("--allocator-repair-interval must be positive")
    servers = [s.strip() for s in a.etcd_servers.split(",") if s.strip()]
    if not servers:
        p.error("--etcd-servers must name at least one URL")
    for url in servers:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            p.error(f"--etcd-servers: {url!r} is not an http(s)://host:port URL")
        if parsed.scheme == "https" and not a.etcd_cafile:
            p.error(f"--etcd-servers: {url!r} is https: give etcd's CA with --etcd-cafile")
    if bool(a.etcd_certfile) != bool(a.etcd_keyfile):
        p.error("--etcd-certfile and --etcd-keyfile must be given together")
    for flag, path in (("--etcd-cafile", a.etcd_cafile), ("--etcd-certfile", a.etcd_certfile),
                       ("--etcd-keyfile", a.etcd_keyfile)):
        if path and not os.access(path, os.R_OK):
            p.error(f"{flag}: cannot read {path}")
    try:
        ipaddress.ip_network(a.service_cluster_ip_range)
    except ValueError as e:
        p.error(f"--service-cluster-ip-range: {e}")
    lo, _, hi = a.service_node_port_range.partition("-")
    if not (lo.isdigit() and hi.isdigit() and 0 < int(lo) <= int(hi) < 65536):
        p.error(f"--service-node-port-range must be LOW-HIGH, got {a.service_node_port_range!r}")
    if a.token_auth_file:
        try:
            load_tokens(a.token_auth_file)
        except TokenFileError as e:
            p.error(str(e))
    elif not _is_loopback(a.bind_address):
        # Kubernetes removed its unauthenticated port altogether; pkube keeps one on loopback only.
        p.error(f"--bind-address {a.bind_address!r} is not a loopback address and no authentication is configured: "
                "set --token-auth-file, or bind to 127.0.0.1")
    sa = _service_account_config(p, a)
    if a.advertise_address:
        try:
            ipaddress.ip_address(a.advertise_address)
        except ValueError as e:
            p.error(f"--advertise-address: {e}")
    if not a.etcd_prefix.startswith("/"):
        p.error("--etcd-prefix must start with /")
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tls_context(a.tls_cert_file, a.tls_private_key_file, p.error, a.client_ca_file)
    if a.client_ca_file and not a.token_auth_file:
        p.error("--client-ca-file needs --token-auth-file (authentication on)")
    kubelet_client_context(a.kubelet_certificate_authority, a.kubelet_client_certificate, a.kubelet_client_key,
                           p.error)
    return Config(servers, a.etcd_prefix, a.bind_address, a.port, a.token_auth_file, a.service_cluster_ip_range,
                  a.service_node_port_range, a.watch_bookmark_interval, a.tls_cert_file, a.tls_private_key_file,
                  a.etcd_cafile, a.etcd_certfile, a.etcd_keyfile, a.kubelet_certificate_authority,
                  a.kubelet_client_certificate, a.kubelet_client_key, a.pod_security_default_enforce, *sa,
                  a.advertise_address, a.advertise_port or a.port,
                  etcd_compaction_interval=a.etcd_compaction_interval, etcd_defrag_threshold=a.etcd_defrag_threshold,
                  event_ttl=a.event_ttl, allocator_repair_interval=a.allocator_repair_interval,
                  client_ca_file=a.client_ca_file, watch_cache_max_bytes=a.watch_cache_max_bytes)


def _service_account_config(p: argparse.ArgumentParser,
                            a: argparse.Namespace) -> tuple[str | None, list[str], list[str]]:
    """(signing key file, verifying key files, issuers), checked as kube-apiserver checks them."""
    keys = list(a.service_account_key_file)
    if a.service_account_signing_key_file:
        if not a.service_account_issuer:
            p.error("--service-account-issuer is required with --service-account-signing-key-file")
        try:
            load_private_key(a.service_account_signing_key_file)
        except KeyFileError as e:
            p.error(f"--service-account-signing-key-file: {e}")
        keys = keys or [a.service_account_signing_key_file]
    elif keys and not a.service_account_issuer:
        p.error("--service-account-issuer is required with --service-account-key-file")
    for path in keys:
        try:
            load_public_keys(path)
        except KeyFileError as e:
            p.error(f"--service-account-key-file: {e}")
    return a.service_account_signing_key_file, keys, list(a.service_account_issuer)


_duration = non_negative(parse_duration, ValueError)
_bytes = non_negative(to_bytes, QuantityError)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _configure_kinds(config: Config) -> None:
    lo, _, hi = config.service_node_port_range.partition("-")
    try:
        kinds.configure(service_cidr=config.service_cluster_ip_range, node_port_range=(int(lo), int(hi)),
                        event_ttl=config.event_ttl)
    except ValueError as e:
        raise StartupError(str(e)) from None


async def run(config: Config, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or the task is cancelled); sets `ready` once requests are answered."""
    _configure_kinds(config)
    etcd_tls = EtcdTLS(config.etcd_cafile, config.etcd_certfile, config.etcd_keyfile) if config.etcd_cafile else None
    storage = EtcdStorage(config.etcd_servers, config.etcd_prefix, tls=etcd_tls)
    # Wait for etcd (it may start at the same time as we do), bounded.
    for _ in range(300):
        if await storage.healthy():
            break
        await asyncio.sleep(0.1)
    else:
        await storage.close()
        raise StartupError(f"etcd at {','.join(config.etcd_servers)} is not reachable")
    runner = web.AppRunner(build_app(config, storage), access_log=None, handle_signals=False,
                           shutdown_timeout=shutdown.GRACE)
    await runner.setup()
    try:
        tls = tls_context(config.tls_cert_file, config.tls_private_key_file, client_ca_file=config.client_ca_file)
        site = web.TCPSite(runner, config.bind_address, config.port, reuse_address=True, ssl_context=tls)
        try:
            await site.start()
        except OSError as e:
            raise StartupError(f"cannot listen on {config.bind_address}:{config.port}: {e.strerror or e}") from None
        log.info("serving on %s://%s:%d (etcd %s, prefix %s)", "https" if tls else "http", config.bind_address,
                 config.port,
                 ",".join(config.etcd_servers), config.etcd_prefix)
        if not config.token_auth_file and not _is_loopback(config.bind_address):
            log.warning("listening on %s without --token-auth-file: anyone who can reach it has full access",
                        config.bind_address)
        if ready is not None:
            ready.set()
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
        await storage.close()


def configure_process() -> None:
    """What the process hosting an apiserver needs (run by main, and by `pkube group` for its member): the watch
    cache's etcd watch is read by a thread (storage/etcdwatch.py), which needs the GIL back quickly."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        dump_tasks_on_sigusr1(loop)
        keep_heap_trimmed(loop)
        await run(config, None, stop)

    configure_process()
    try:
        run_event_loop(serve())
    except RuntimeError as e:  # StartupError, or a TLS file tls.py could not load
        print(f"pkube apiserver: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pkube apiserver: cannot listen on {config.bind_address}:{config.port}: {e.strerror}",
              file=sys.stderr)
        return 1
    return 0
