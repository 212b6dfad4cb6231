"""The RBAC objects as the authorizer reads them: a snapshot of the watch cache, like Kubernetes' informers.

No etcd read per request: the watch cache already holds every Role, ClusterRole, RoleBinding and
ClusterRoleBinding and is kept current by etcd's watch. The snapshot (objects indexed by namespace and name,
rules parsed) is rebuilt only when one of the four kinds changed since the last request.
"""
from __future__ import annotations

from typing import Any, Iterator

from pklib.resources import CLUSTERROLEBINDINGS, CLUSTERROLES, PODS, PVCS, ROLEBINDINGS, ROLES

from ..watchcache import ResourceCache, WatchCache, resource_prefix
from .rbac import StaticPolicy

_PREFIXES = tuple(resource_prefix(r.group, r.plural) for r in (ROLES, CLUSTERROLES, ROLEBINDINGS,
                                                                  CLUSTERROLEBINDINGS))


_PODS = resource_prefix(PODS.group, PODS.plural)
_CLAIMS = resource_prefix(PVCS.group, PVCS.plural)


def _version(rc: ResourceCache) -> tuple[int, int, int]:
    last = rc.history[-1][0] if rc.history else 0
    return id(rc), last, len(rc.objects)


class PolicyCache:
    def __init__(self, cache: WatchCache) -> None:
        self.cache = cache
        self._seen: tuple[tuple[int, int, int], ...] = ()
        self._policy = StaticPolicy(())

    def policy(self) -> StaticPolicy:
        caches = [self.cache.for_prefix(p) for p in _PREFIXES]
        seen = tuple(_version(rc) for rc in caches)
        if seen != self._seen:
            self._policy = StaticPolicy(c.obj for rc in caches for c in rc.objects.values())
            self._seen = seen
        return self._policy


class NodeGraphCache:
    """What the Node authorizer asks (authz/node.py), answered from the watch cache: which pods are bound to a
    node, and the claims they use. A scan of the namespace's pods per question: nodes ask rarely (when a pod
    starts), so no index is kept."""

    def __init__(self, cache: WatchCache) -> None:
        self.cache = cache

    def pods_on_node(self, node: str, namespace: str | None) -> Iterator[dict[str, Any]]:
        prefix = f"{_PODS}{namespace}/" if namespace else _PODS
        for key, cached in list(self.cache.for_prefix(_PODS).objects.items()):
            if key.startswith(prefix) and (cached.obj.get("spec") or {}).get("nodeName") == node:
                yield cached.obj

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        cached = self.cache.for_prefix(_PODS).objects.get(f"{_PODS}{namespace}/{name}")
        return cached.obj if cached is not None else None

    def claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        cached = self.cache.for_prefix(_CLAIMS).objects.get(f"{_CLAIMS}{namespace}/{name}")
        return cached.obj if cached is not None else None
