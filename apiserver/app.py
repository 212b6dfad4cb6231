"""The aiohttp application: middlewares, routes, and the lifecycle of the watch cache."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from aiohttp import web

from pklib import resources
from pklib.api.wellknown import SYSTEM_NAMESPACES
from pklib.api.priority import BUILTIN_CLASSES, builtin_class

from . import (aggregated_discovery, auth, bodies, crds, discovery, etcdmaintenance, fieldvalidation,
               master_service, metrics_api, openapi, proxy_pods, repair, satokens, serviceaccounts, shutdown)
from .admission import podsecurity
from .authz import middleware as authz_middleware, policy as bootstrap_policy, reviews
from .authz.authorizer import Authorizer
from .authz.cache import NodeGraphCache, PolicyCache
from .handlers import Api
from .handlers_objects import Objects
from .kinds.apiservices import local_apiservices
from .metrics import Metrics
from .status import StatusError, json_response, status_middleware
from .storage.etcd import EtcdStorage
from .storage.interface import NoSpaceError, Storage
from .tls import kubelet_client_context
from .watchcache import HISTORY_BYTES, WatchCache

log = logging.getLogger("apiserver")
SYSTEM_NAMESPACES_INTERVAL = 60.0  # Kubernetes' system namespaces controller resyncs every minute


@dataclass
class Config:
    etcd_servers: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    etcd_prefix: str = "/registry"
    bind_address: str = "127.0.0.1"
    port: int = 6443
    token_auth_file: str | None = None
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    watch_bookmark_interval: float = 60.0  # Kubernetes sends one about every minute
    tls_cert_file: str | None = None  # with tls_private_key_file: serve HTTPS
    tls_private_key_file: str | None = None
    etcd_cafile: str | None = None  # with https:// etcd servers: etcd's CA, and our client certificate below
    etcd_certfile: str | None = None
    etcd_keyfile: str | None = None
    kubelet_certificate_authority: str | None = None  # verifies kubelets' serving certificates
    kubelet_client_certificate: str | None = None  # how the apiserver authenticates to kubelets
    kubelet_client_key: str | None = None
    pod_security_default_enforce: str = "baseline"  # Pod Security level of namespaces without labels
    service_account_signing_key_file: str | None = None  # signs service-account tokens (TokenRequest)
    service_account_key_files: list[str] = field(default_factory=list)  # verify them
    service_account_issuers: list[str] = field(default_factory=list)
    advertise_address: str | None = None  # set: the `kubernetes` Service in `default` points here
    advertise_port: int = 6443
    etcd_compaction_interval: float = etcdmaintenance.DEFAULT_COMPACTION_INTERVAL  # 0 = never
    etcd_defrag_threshold: int = etcdmaintenance.DEFAULT_DEFRAG_THRESHOLD
    event_ttl: float = 3600.0
    allocator_repair_interval: float = repair.DEFAULT_INTERVAL
    client_ca_file: str | None = None  # with TLS: client certificates of this CA authenticate (auth.py)
    watch_cache_max_bytes: int = HISTORY_BYTES  # per resource, in the watch cache's event history


@web.middleware
async def admission_warnings(request: web.Request, handler: Any) -> web.StreamResponse:
    """Admission's warnings about a write (Pod Security) go out as `Warning` headers, refused or not."""
    warnings, token = podsecurity.collect()
    try:
        return await handler(request)  # type: ignore[no-any-return]
    finally:
        podsecurity.stop_collecting(token)
        if warnings:
            request[fieldvalidation.WARNINGS] = [*(request.get(fieldvalidation.WARNINGS) or []), *warnings]


async def _health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app(config: Config, storage: Storage) -> web.Application:
    metrics = Metrics()
    cache = WatchCache(storage, config.watch_cache_max_bytes)
    metrics.watch_cache(cache.stats)
    api = Api(storage, cache, metrics, config.watch_bookmark_interval)
    authorizer = Authorizer(PolicyCache(cache).policy, NodeGraphCache(cache))
    api.objects.pod_security = podsecurity.PodSecurity(config.pod_security_default_enforce)
    accounts = _service_accounts(config, api.objects)
    static = [auth.static_tokens(auth.load_tokens(config.token_auth_file))] if config.token_auth_file else []
    if accounts.issuer is not None:
        api.objects.mount_service_account_tokens = True  # the ServiceAccount admission plugin
    crd_registry = crds.Registry(api.objects, cache)  # listens to the cache before it loads
    middlewares: list[Any] = [metrics.middleware()]
    if config.token_auth_file:
        # Authentication answers 401 itself and authorization 403; put them inside metrics so refused requests
        # are counted too. Without authentication there is nobody to authorize (Kubernetes' AlwaysAllow).
        authenticators = [*static, accounts.authenticate, auth.bootstrap_tokens(_secret_reader(api.objects))]
        middlewares.append(auth.middleware(authenticators))
        middlewares.append(authz_middleware.middleware(authorizer))
    middlewares.append(status_middleware)
    middlewares.append(admission_warnings)
    app = web.Application(middlewares=middlewares, client_max_size=bodies.MAX_BODY + 1)
    stopping = shutdown.install(app)

    async def readyz(_: web.Request) -> web.Response:
        if stopping.is_set():
            return web.Response(status=503, text="shutdown: the apiserver is shutting down")
        if not await storage.healthy():
            return web.Response(status=503, text="etcd: not reachable")
        if not cache.ready:
            return web.Response(status=503, text="watch cache: not synced")
        return web.Response(text="ok")

    async def metrics_handler(_: web.Request) -> web.Response:
        return metrics.render()

    app.router.add_get("/healthz", _health)
    app.router.add_get("/livez", _health)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_routes(discovery_routes(cache))
    app.router.add_routes(openapi.routes())
    kubelet_tls = kubelet_client_context(config.kubelet_certificate_authority, config.kubelet_client_certificate,
                                         config.kubelet_client_key)
    app.router.add_routes(reviews.routes(authorizer))  # virtual kinds: before the generic routes
    app.router.add_routes(serviceaccounts.self_subject_review_routes())
    app.router.add_routes(accounts.routes(static))  # serviceaccounts/token, tokenreviews
    app.router.add_routes(proxy_pods.routes(storage, kubelet_tls))  # pods/log, pods/exec: before the generic routes
    app.router.add_routes(metrics_api.routes(cache, kubelet_tls))  # metrics.k8s.io: nothing stored
    app.router.add_routes(api.routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await cache.start()
        crd_registry.start()
        background: list[asyncio.Task[None]] = []
        if isinstance(storage, EtcdStorage):  # compaction and defragmentation are etcd's business
            settings = etcdmaintenance.Settings(config.etcd_compaction_interval, config.etcd_defrag_threshold)
            background.append(asyncio.create_task(etcdmaintenance.Maintainer(storage, settings, metrics).run(),
                                                  name="etcd-maintenance"))
        try:
            await _ensure_defaults(api.objects)
        except NoSpaceError as e:
            # Serve anyway (reads work, and the maintenance above is what gives the space back).
            log.warning("cannot create the default objects yet: %s", e)
            background.append(asyncio.create_task(_ensure_defaults_later(api.objects), name="ensure-defaults"))
        background.append(asyncio.create_task(
            repair.AllocatorRepair(storage, config.allocator_repair_interval, metrics).run(), name="allocator-repair"))
        background.append(asyncio.create_task(_keep_namespaces(api.objects), name="system-namespaces"))
        if config.advertise_address:
            background.append(asyncio.create_task(
                master_service.keep(api.objects, config.service_cluster_ip_range, config.advertise_address,
                                    config.advertise_port), name="kubernetes-service"))
        for task in background:
            task.add_done_callback(_report_death)
        yield
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await crd_registry.stop()
        await cache.stop()

    async def end_watches(app: web.Application) -> None:
        cache.close_watchers()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(fieldvalidation.add_warning_headers)
    # on_shutdown runs before aiohttp waits for open requests: end the watches so shutdown is not held up
    # (proxied streams end by themselves on `stopping`: shutdown.py).
    app.on_shutdown.append(end_watches)
    return app


def _service_accounts(config: Config, objects: Objects) -> serviceaccounts.ServiceAccounts:
    """Service-account tokens are checked when keys and issuers are configured, and issued with a signing key.
    Without them TokenReview still answers for the other authenticators (static tokens) and TokenRequest is 404,
    rather than leaving the generic handlers to store a review."""
    if not config.service_account_key_files or not config.service_account_issuers:
        return serviceaccounts.ServiceAccounts(None, satokens.Validator([], ()), objects)
    keys = [k for path in config.service_account_key_files for k in satokens.load_public_keys(path)]
    validator = satokens.Validator(keys, tuple(config.service_account_issuers))
    issuer = None
    if config.service_account_signing_key_file:
        issuer = satokens.Issuer(satokens.load_private_key(config.service_account_signing_key_file),
                                 config.service_account_issuers[0])
    return serviceaccounts.ServiceAccounts(issuer, validator, objects)


def _report_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s died", task.get_name(), exc_info=task.exception())


def _secret_reader(objects: Objects) -> auth.SecretReader:
    async def read(namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await objects.get(resources.SECRETS, namespace, name)
        except StatusError as e:
            if e.code == 404:
                return None
            raise
    return read


async def _ensure_defaults(objects: Objects) -> None:
    await _ensure_namespaces(objects)
    await _ensure_priority_classes(objects)
    await _ensure_rbac_defaults(objects)
    await _ensure_local_apiservices(objects)


async def _ensure_defaults_later(objects: Objects, interval: float = 5.0) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await _ensure_defaults(objects)
            log.info("default objects created")
            return
        except NoSpaceError:
            continue


async def _ensure_namespaces(objects: Objects) -> None:
    for name in SYSTEM_NAMESPACES:
        await objects.ensure(resources.NAMESPACES,
                             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def _keep_namespaces(objects: Objects) -> None:
    """Kubernetes' system namespaces controller: a system namespace someone deleted (kube-node-lease may be)
    comes back within a minute, so components never need to create the namespace of their Lease."""
    while True:
        await asyncio.sleep(SYSTEM_NAMESPACES_INTERVAL)
        try:
            if any([await objects.namespace_object(n) is None for n in SYSTEM_NAMESPACES]):
                await _ensure_namespaces(objects)
        except Exception as e:  # the store may be unavailable for a while: try again next time
            log.warning("ensuring the system namespaces: %s", e)


async def _ensure_priority_classes(objects: Objects) -> None:
    for name in BUILTIN_CLASSES:
        await objects.ensure(resources.PRIORITYCLASSES, builtin_class(name))


async def _ensure_rbac_defaults(objects: Objects) -> None:
    """The default roles and bindings (created when missing; ones an admin changed are left alone)."""
    for role in bootstrap_policy.cluster_roles():
        await objects.ensure(resources.CLUSTERROLES, role)
    for binding in bootstrap_policy.cluster_role_bindings():
        await objects.ensure(resources.CLUSTERROLEBINDINGS, binding)
    for role, role_binding in bootstrap_policy.public_roles():
        await objects.ensure(resources.ROLES, role)
        await objects.ensure(resources.ROLEBINDINGS, role_binding)


async def _ensure_local_apiservices(objects: Objects) -> None:
    """This server's group versions as Local APIServices (Kubernetes' autoregister controller)."""
    for apiservice in local_apiservices():
        await objects.ensure(resources.APISERVICES, apiservice)


def discovery_routes(cache: WatchCache | None = None) -> list[web.RouteDef]:
    """/version, /api, /api/v1, /apis, /apis/<group>[/<version>] from the pure functions in discovery.py.

    The named groups include custom kinds: first the watch cache catches up with etcd, so that a CRD
    Established a moment ago (through any API server) is listed (read-your-writes, as for lists)."""
    async def caught_up() -> None:
        if cache is not None:
            await cache.catch_up(1.0)

    def found(doc: dict[str, Any] | None) -> web.Response:
        if doc is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return json_response(doc)

    async def version(_: web.Request) -> web.Response:
        return json_response(discovery.version())

    async def core_versions(request: web.Request) -> web.Response:
        return aggregated_discovery.response(request, core=True) or json_response(
            discovery.api_versions(request.host))

    async def core_resources(request: web.Request) -> web.Response:
        return found(discovery.api_resource_list("", request.match_info["version"]))

    async def group_list(request: web.Request) -> web.Response:
        await caught_up()
        return aggregated_discovery.response(request, core=False) or json_response(discovery.api_group_list())

    async def group(request: web.Request) -> web.Response:
        await caught_up()
        return found(discovery.api_group(request.match_info["group"]))

    async def group_resources(request: web.Request) -> web.Response:
        await caught_up()
        return found(discovery.api_resource_list(request.match_info["group"], request.match_info["version"]))

    return [web.get("/version", version), web.get("/api", core_versions), web.get("/api/{version}", core_resources),
            web.get("/apis", group_list), web.get("/apis/{group}", group),
            web.get("/apis/{group}/{version}", group_resources)]
