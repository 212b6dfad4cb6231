"""HTTP routing for /api/v1/... and /apis/<group>/<version>/...: path → (resource, namespace, name, subresource) → verb."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pklib import resources
from pklib.resources import Resource

from . import bodies, deletion, eviction, fieldvalidation, handlers_sub, serverside_apply, tables
from .handlers_list import list_objects, parse_filters
from .handlers_objects import Objects, apply_patch, collection_prefix, converts, served
from .metrics import RESOURCE, VERB, Metrics
from .status import StatusError, json_response, method_not_allowed
from .storage.interface import Storage
from .watch import WATCH_RESPONSE, is_watch, serve_watch
from .watchcache import WatchCache, resource_prefix

# Subresources served here; pods/log and pods/exec are relayed to the kubelet by proxy_pods.py.
SERVED_SUBRESOURCES = {"status", "scale", "binding", "eviction", "finalize", "approval", "ephemeralcontainers"}


BUILTIN_GROUPS = frozenset(r.group for r in resources.RESOURCES)
CRD_CATCH_UP = 1.0  # how long a request for an unknown custom kind waits for the watch cache


def dry_run(request: web.Request) -> bool:
    """`?dryRun=All`: run every check of a write, store nothing (kubectl --dry-run=server, kubectl diff)."""
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise StatusError(400, "BadRequest", f'unsupported dryRun value "{v}": only "All" is supported')
    return bool(values)


def _not_found() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource")


@dataclass(frozen=True)
class Target:
    res: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


def resolve(group: str, version: str, tail: str) -> Target:
    """Parse the part of a path after the group/version, as Kubernetes' request-info resolver does."""
    segs = [s for s in tail.strip("/").split("/")]
    if not segs or not segs[0]:
        raise _not_found()
    namespace = None
    if segs[0] == "namespaces" and len(segs) >= 3:
        inner = resources.for_path(group, version, segs[2])
        if inner is not None and inner.namespaced:
            namespace, segs = segs[1], segs[2:]
    if len(segs) > 3:
        raise _not_found()
    res = resources.for_path(group, version, segs[0])
    if res is None:
        raise _not_found()
    name = segs[1] if len(segs) > 1 else None
    sub = segs[2] if len(segs) > 2 else None
    if name == "" or sub == "" or (res.namespaced and name is not None and namespace is None):
        raise _not_found()
    if sub is not None and (sub not in res.subresources or sub not in SERVED_SUBRESOURCES):
        raise _not_found()
    return Target(res, namespace, name, sub)


class Api:
    def __init__(self, storage: Storage, cache: WatchCache, metrics: Metrics, bookmark_interval: float):
        self.storage = storage
        self.cache = cache
        self.metrics = metrics
        self.objects = Objects(storage, cache)
        self.bookmark_interval = bookmark_interval

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/api/{version}/{tail:.+}", self.core),
                web.route("*", "/apis/{group}/{version}/{tail:.+}", self.grouped)]

    async def core(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["version"] != "v1":
            raise _not_found()
        return await self.dispatch(request, resolve("", "v1", request.match_info["tail"]))

    async def grouped(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            target = resolve(m["group"], m["version"], m["tail"])
        except StatusError:
            if m["group"] in BUILTIN_GROUPS:
                raise
            # A custom kind this server has not seen yet (its CRD was Established a moment ago): once the watch
            # cache shows etcd's current state, the CRD registry knows what is served.
            await self.cache.catch_up(CRD_CATCH_UP)
            target = resolve(m["group"], m["version"], m["tail"])
        return await self.dispatch(request, target)

    async def dispatch(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[RESOURCE] = t.res.plural if t.subresource is None else f"{t.res.plural}/{t.subresource}"
        method = request.method
        if t.name is None:
            handler = {"GET": self.list_or_watch, "POST": self.create,
                       "DELETE": self.delete_collection}.get(method)
        elif t.subresource is None:
            handler = {"GET": self.get_or_watch, "PUT": self.update, "PATCH": self.patch,
                       "DELETE": self.delete}.get(method)
        else:
            handler = self._subresource_handler(t.subresource, method)
        if handler is None:
            raise method_not_allowed(method)
        return await handler(request, t)

    def _subresource_handler(self, sub: str, method: str) -> Any:
        if sub == "scale":
            return {"GET": self.get_scale, "PUT": self.put_scale, "PATCH": self.patch_scale}.get(method)
        if sub == "binding":
            return {"POST": self.binding}.get(method)
        if sub == "eviction":
            return {"POST": self.evict}.get(method)
        if sub in ("finalize", "approval"):
            return {"PUT": self.update}.get(method)
        return {"GET": self.get_or_watch, "PUT": self.update, "PATCH": self.patch}.get(method)

    # -- verbs -------------------------------------------------------------------------------

    async def list_or_watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        table = tables.wants_table(request)
        if is_watch(request.query):
            request[VERB] = "WATCH"
            if table:
                request[WATCH_RESPONSE] = tables.watch_response_class(request, t.res, table)
            return await serve_watch(request, self.storage, self.cache, self.metrics, t.res, t.namespace, None,
                                     self.bookmark_interval)
        request[VERB] = "LIST"
        body = await list_objects(self.storage, self.cache, t.res, t.namespace, request.query)
        if converts(t.res):
            doc = orjson.loads(body)
            doc["items"] = [served(t.res, item) for item in doc.get("items") or []]
            body = orjson.dumps(doc)
        if table:
            return tables.list_response(request, t.res, body, table)
        return web.Response(body=body, content_type="application/json")

    async def get_or_watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        table = tables.wants_table(request) if t.subresource is None else None
        if is_watch(request.query) and t.subresource is None:
            request[VERB] = "WATCH"
            if table:
                request[WATCH_RESPONSE] = tables.watch_response_class(request, t.res, table)
            return await serve_watch(request, self.storage, self.cache, self.metrics, t.res, t.namespace, t.name,
                                     self.bookmark_interval)
        request[VERB] = "GET"
        assert t.name is not None
        obj = served(t.res, await self.objects.get(t.res, t.namespace, t.name))
        if table:
            return tables.object_response(request, t.res, obj, table)
        return json_response(obj)

    async def create(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "POST"
        body = await bodies.read_object(request)
        assert body is not None
        fieldvalidation.check(request, t.res, body)
        return json_response(served(t.res, await self.objects.create(t.res, t.namespace, body,
                                                                     dry_run=dry_run(request))), 201)

    async def update(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "PUT"
        body = await bodies.read_object(request)
        assert body is not None and t.name is not None
        if t.subresource is None:
            fieldvalidation.check(request, t.res, body)
        return json_response(served(t.res, await self.objects.update(t.res, t.namespace, t.name, body,
                                                                     t.subresource, dry_run=dry_run(request))))

    async def patch(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "PATCH"
        assert t.name is not None
        if serverside_apply.is_apply(request) and t.subresource is None:
            return await serverside_apply.apply(self.objects, request, t.res, t.namespace, t.name, dry_run(request))
        kind, patch = await bodies.read_patch(request)
        if kind == "strategic" and t.res.custom:
            # Custom resources have no patch strategies to merge by: Kubernetes refuses the type.
            raise bodies.unsupported(request.content_type, [
                *(m for m in bodies.PATCH_TYPES if "strategic" not in m), "application/apply-patch+yaml"])
        if t.subresource is None and kind != "json":
            fieldvalidation.check(request, t.res, patch)
        return json_response(served(t.res, await self.objects.patch(t.res, t.namespace, t.name, kind, patch,
                                                                    t.subresource, dry_run=dry_run(request))))

    async def delete(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "DELETE"
        opts = deletion.DeleteOptions.parse(await bodies.read_object(request, optional=True), request.query)
        assert t.name is not None
        obj, gone = await deletion.delete(self.objects, t.res, t.namespace, t.name, opts)
        served(t.res, obj)
        # Kubernetes answers 202 only for a foreground deletion that is still in progress.
        return json_response(obj, 202 if not gone and opts.propagation_policy == "Foreground" else 200)

    async def delete_collection(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "DELETECOLLECTION"
        opts = deletion.DeleteOptions.parse(await bodies.read_object(request, optional=True), request.query)
        filters = parse_filters(t.res, request.query)
        rc = self.cache.for_prefix(resource_prefix(t.res.group, t.res.plural))
        await self.cache.catch_up(1.0)
        deleted: list[dict[str, Any]] = []
        for cached in rc.items(collection_prefix(t.res, t.namespace), filters.matches):
            meta = cached.obj["metadata"]
            try:
                obj, _ = await deletion.delete(self.objects, t.res, meta.get("namespace"), meta["name"], opts)
            except StatusError as e:
                if e.code == 404:
                    continue  # deleted by someone else meanwhile
                raise
            deleted.append(served(t.res, obj))
        return json_response({"kind": t.res.list_kind, "apiVersion": t.res.api_version,
                              "metadata": {"resourceVersion": str(self.cache.revision)}, "items": deleted})

    # -- subresources ------------------------------------------------------------------------

    async def get_scale(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "GET"
        assert t.name is not None
        return json_response(handlers_sub.to_scale(t.res, await self.objects.get(t.res, t.namespace, t.name)))

    async def put_scale(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "PUT"
        body = await bodies.read_object(request)
        assert t.name is not None and body is not None
        return json_response(await handlers_sub.update_scale(self.objects, t.res, t.namespace, t.name,
                                                             lambda _current: body))

    async def patch_scale(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "PATCH"
        kind, patch = await bodies.read_patch(request)

        def scale_of(current: dict[str, Any]) -> dict[str, Any]:
            return apply_patch(kind, current, patch)

        assert t.name is not None
        return json_response(await handlers_sub.update_scale(self.objects, t.res, t.namespace, t.name, scale_of))

    async def binding(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "POST"
        body = await bodies.read_object(request)
        assert t.name is not None and body is not None
        return json_response(await handlers_sub.bind(self.objects, t.res, t.namespace, t.name, body), 201)


    async def evict(self, request: web.Request, t: Target) -> web.StreamResponse:
        request[VERB] = "POST"
        body = await bodies.read_object(request)
        assert t.name is not None and t.namespace is not None and body is not None
        return json_response(await eviction.evict(self.objects, t.namespace, t.name, body, dry_run(request)), 201)
