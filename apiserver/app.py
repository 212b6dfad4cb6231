"""The aiohttp application: middlewares, routes, and the lifecycle of the watch cache."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from aiohttp import web

from pklib import resources
from pklib.api.wellknown import SYSTEM_NAMESPACES
from pklib.api.priority import BUILTIN_CLASSES, builtin_class

from . import aggregated_discovery, auth, bodies, crds, discovery, fieldvalidation, openapi, proxy_pods
from .admission import podsecurity
from .authz import middleware as authz_middleware, policy as bootstrap_policy, reviews
from .authz.authorizer import Authorizer
from .authz.cache import NodeGraphCache, PolicyCache
from .handlers import Api
from .handlers_objects import Objects
from .metrics import Metrics
from .status import StatusError, json_response, status_middleware
from .storage.interface import Storage
from .tls import kubelet_client_context
from .watchcache import WatchCache


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
    cache = WatchCache(storage)
    api = Api(storage, cache, metrics, config.watch_bookmark_interval)
    authorizer = Authorizer(PolicyCache(cache).policy, NodeGraphCache(cache))
    api.objects.pod_security = podsecurity.PodSecurity(config.pod_security_default_enforce)
    crd_registry = crds.Registry(api.objects, cache)  # listens to the cache before it loads
    middlewares: list[Any] = [metrics.middleware()]
    if config.token_auth_file:
        # Authentication answers 401 itself and authorization 403; put them inside metrics so refused requests
        # are counted too. Without authentication there is nobody to authorize (Kubernetes' AlwaysAllow).
        middlewares.append(auth.middleware(auth.load_tokens(config.token_auth_file)))
        middlewares.append(authz_middleware.middleware(authorizer))
    middlewares.append(status_middleware)
    middlewares.append(admission_warnings)
    app = web.Application(middlewares=middlewares, client_max_size=bodies.MAX_BODY + 1)

    async def readyz(_: web.Request) -> web.Response:
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
    app.router.add_routes(proxy_pods.routes(storage, kubelet_tls))  # pods/log, pods/exec: before the generic routes
    app.router.add_routes(api.routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await cache.start()
        crd_registry.start()
        await _ensure_namespaces(api.objects)
        await _ensure_priority_classes(api.objects)
        await _ensure_rbac_defaults(api.objects)
        yield
        await crd_registry.stop()
        await cache.stop()

    async def end_watches(app: web.Application) -> None:
        cache.close_watchers()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(fieldvalidation.add_warning_headers)
    # on_shutdown runs before aiohttp waits for open requests: end the watches so shutdown is not held up.
    app.on_shutdown.append(end_watches)
    return app


async def _ensure_namespaces(objects: Objects) -> None:
    for name in SYSTEM_NAMESPACES:
        await objects.ensure(resources.NAMESPACES,
                             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def _ensure_priority_classes(objects: Objects) -> None:
    for name in BUILTIN_CLASSES:
        await objects.ensure(resources.PRIORITYCLASSES, builtin_class(name))


async def _ensure_rbac_defaults(objects: Objects) -> None:
    """The default roles and bindings (created when missing; ones an admin changed are left alone)."""
    for role in bootstrap_policy.cluster_roles():
        await objects.ensure(resources.CLUSTERROLES, role)
    for binding in bootstrap_policy.cluster_role_bindings():
        await objects.ensure(resources.CLUSTERROLEBINDINGS, binding)


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
