"""DaemonSet controller: exactly one pod per eligible node.

For every node the template fits (nodeSelector, required node affinity, taints,
cordon) there must be one active pod; pods on nodes that no longer fit (or no
longer exist) go. Pods are placed directly (spec.nodeName, plus the
matchFields metadata.name affinity Kubernetes writes) since the controller has
already decided the node. RollingUpdate replaces pods of an older template while
at most maxUnavailable nodes lack an available pod; OnDelete waits for the user.

Each template is kept as a ControllerRevision (controllers/history.py, Kubernetes' constructHistory):
pods carry its hash (controller-revision-hash), a template that comes back reuses its revision with
a new number, and revisionHistoryLimit trims old revisions no pod runs any more.
"""
from __future__ import annotations

import asyncio
import copy
from typing import Any

from pklib.api.tolerations import with_daemon_tolerations
from pklib.controller import ControllerContext
from pklib.errors import ApiError, is_not_found
from pklib.informer import Obj, Store
from pklib.objects import key_of
from pklib.resources import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS

from .claims import claim
from .history import (POD_REVISION_LABEL, create_revision, delete_revisions, new_revision, next_revision,
                      renumber, sort_revisions, template_patch)
from .nodefit import placement
from .replicaset import BURST_REPLICAS
from .util import (PodOwnerController, available_in, create_owned, int_or_percent, is_pod_available, is_pod_ready,
                   meta, pod_from_template, random_suffix, selector_of, write_status)


HASH_LABEL = POD_REVISION_LABEL
GENERATION_LABEL = "pod-template-generation"


class DaemonSetController(PodOwnerController):
    name = "daemonset"
    owner_kind = "DaemonSet"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.ds_informer = self.watch(DAEMONSETS, self.enqueue, lambda old, new: self.enqueue(new), self._ds_deleted)
        self.node_informer = self.watch(NODES, self._node_changed, lambda old, new: self._node_changed(new),
                                        self._node_changed)
        self.pod_informer = self.watch(PODS, self._pod_added, self._pod_updated, self._pod_deleted)
        self.revision_informer = self.watch_revisions()

    def _ds_deleted(self, ds: Obj) -> None:
        self.expectations.forget(key_of(ds))

    def _node_changed(self, node: Obj) -> None:
        for ds in self.ds_informer.store.list():
            self.enqueue(ds)

    def owner_store(self) -> Store:
        return self.ds_informer.store

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._owned_pod_updated(new)

    # -- reconcile ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ds = self._owner_to_sync(key)
        if ds is None:
            return
        selector = selector_of(ds)
        ns = meta(ds)["namespace"]
        candidates = [p for p in self.pod_informer.store.by_index("namespace", ns)]
        pods = await claim(self.client, PODS, ds, candidates, selector)
        nodes = {meta(n)["name"]: n for n in self.node_informer.store.list()}
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            by_node.setdefault(_node_of(p) or "", []).append(p)
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        tmpl_spec = template.get("spec") or {}
        # placed as the pods will be made: with the daemon tolerations (a lost node keeps its daemon pod)
        pod_spec = {**tmpl_spec, "tolerations": with_daemon_tolerations(tmpl_spec.get("tolerations"))}
        plan = [(name, *placement(pod_spec, node)) for name, node in sorted(nodes.items())]
        status = ds.get("status") or {}
        if meta(ds).get("deletionTimestamp") or selector is None:
            # No history is written for a set that is going (or selects nothing).
            await self._update_status(ds, plan, by_node, "", int(status.get("collisionCount") or 0))
            return
        # Orphaned revisions the selector matches are adopted (ClaimControllerRevisions).
        revisions = await claim(self.client, CONTROLLERREVISIONS, ds,
                                self.revision_informer.store.by_index("namespace", ns), selector)
        current, old, collisions = await self._history(ds, revisions)
        current_hash = (meta(current).get("labels") or {}).get(HASH_LABEL) or ""

        if self.expectations.satisfied(key):
            to_create: list[str] = []
            to_delete: list[Obj] = []
            for name, should_run, may_continue in plan:
                live = [p for p in by_node.get(name, []) if not meta(p).get("deletionTimestamp")]
                failed = [p for p in live if (p.get("status") or {}).get("phase") == "Failed"]
                live = [p for p in live if p not in failed]
                to_delete += failed  # a failed daemon pod is replaced
                if should_run and not live and not [p for p in by_node.get(name, []) if p not in failed]:
                    to_create.append(name)
                elif live and not may_continue:
                    to_delete += live
                elif len(live) > 1:
                    live.sort(key=lambda p: meta(p).get("creationTimestamp") or "")
                    to_delete += live[1:]  # keep the oldest
            # Pods whose node is gone would wait forever for a kubelet to finish them.
            gone = [p for n, ps in by_node.items() if n not in nodes for p in ps]
            to_delete += self._rolling_victims(ds, plan, by_node, current_hash) if not to_create else []
            await self._apply(ds, key, template, current_hash, to_create[:BURST_REPLICAS],
                              to_delete[:BURST_REPLICAS], gone)
            await self._cleanup_history(ds, old, pods)
        await self._update_status(ds, plan, by_node, current_hash, collisions)

    async def _history(self, ds: Obj, revisions: list[Obj]) -> tuple[Obj, list[Obj], int]:
        """(current revision, older revisions, collisionCount): the revision whose data is the template
        (created, or brought forward with the next number when the template went back to it)."""
        collisions = int((ds.get("status") or {}).get("collisionCount") or 0)
        data = template_patch(ds)
        matching = sort_revisions([r for r in revisions if r.get("data") == data])
        old = [r for r in revisions if r.get("data") != data]
        number = next_revision(old)
        if not matching:
            current, collisions = await create_revision(
                self.client, ds, new_revision(ds, data, number, collisions, HASH_LABEL), collisions, HASH_LABEL)
        else:
            # Duplicates of the current template (left by collisions) count as old: the limit trims them.
            current, old = matching[-1], old + matching[:-1]
            if int(current.get("revision") or 0) < number:
                current = await renumber(self.client, current, number)
        return current, old, collisions

    async def _cleanup_history(self, ds: Obj, old: list[Obj], pods: list[Obj]) -> None:
        """Delete the oldest revisions beyond revisionHistoryLimit, sparing those a pod still runs."""
        to_kill = len(old) - int((ds.get("spec") or {}).get("revisionHistoryLimit", 10))
        if to_kill <= 0:
            return
        running = {(meta(p).get("labels") or {}).get(HASH_LABEL) for p in pods}
        unused = [r for r in sort_revisions(old) if (meta(r).get("labels") or {}).get(HASH_LABEL) not in running]
        await delete_revisions(self.client, unused[:to_kill])

    def _rolling_victims(self, ds: Obj, plan: list[tuple[str, bool, bool]], by_node: dict[str, list[Obj]],
                         current_hash: str) -> list[Obj]:
        strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return []
        wanted = [name for name, should_run, _ in plan if should_run]
        mrs = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        max_unavailable = int_or_percent(((strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)),
                                         len(wanted), round_up=True) or 1
        unavailable = 0
        old_available: list[Obj] = []
        victims: list[Obj] = []
        for name in wanted:
            live = [p for p in by_node.get(name, []) if not meta(p).get("deletionTimestamp")]
            if not live or not any(is_pod_available(p, mrs) for p in live):
                unavailable += 1
            for p in live:
                if is_updated(ds, p, current_hash):
                    continue
                if is_pod_available(p, mrs):
                    old_available.append(p)
                else:
                    victims.append(p)  # an old pod that is not available costs nothing to replace
        budget = max_unavailable - unavailable
        return victims + old_available[:max(0, budget)]

    async def _apply(self, ds: Obj, key: str, template: Obj, current_hash: str, create: list[str],
                     delete: list[Obj], gone: list[Obj]) -> None:
        delete = list({key_of(p): p for p in delete}.values())
        self.expectations.expect_creations(key, len(create))
        self.expectations.expect_deletions(key, [key_of(p) for p in delete])
        results = await asyncio.gather(
            *(self._create_pod(ds, template, current_hash, node) for node in create),
            *(self.client.delete(PODS, meta(p)["name"], meta(p)["namespace"]) for p in delete),
            *(self.client.delete(PODS, meta(p)["name"], meta(p)["namespace"], grace_period_seconds=0) for p in gone),
            return_exceptions=True)
        errors = [r for r in results if isinstance(r, ApiError) and not is_not_found(r)]
        for r in results[:len(create)]:
            if isinstance(r, BaseException):
                self.expectations.creation_observed(key)
        for p, r in zip(delete, results[len(create):len(create) + len(delete)]):
            if isinstance(r, BaseException):
                self.expectations.deletion_observed(key, key_of(p))
        if create and len(errors) < len(create):
            self.recorder.normal(ds, "SuccessfulCreate", f"Created pods on nodes {', '.join(create[:5])}")
        unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, ApiError)]
        if unexpected:
            raise unexpected[0]
        if errors:
            self.recorder.warning(ds, "FailedDaemonPod", errors[0].message)
            raise errors[0]

    async def _create_pod(self, ds: Obj, template: Obj, current_hash: str, node: str) -> Obj:
        name = meta(ds)["name"]
        pod = pod_from_template(template, ds, name=f"{name}-{random_suffix()}",
                                generate_name=f"{name}-")
        pod["metadata"]["labels"][HASH_LABEL] = current_hash
        pod["metadata"]["labels"][GENERATION_LABEL] = str(meta(ds).get("generation", 1))
        spec = pod["spec"]
        spec["nodeName"] = node
        spec["tolerations"] = with_daemon_tolerations(spec.get("tolerations"))
        affinity = copy.deepcopy(spec.get("affinity") or {})
        affinity.setdefault("nodeAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
        spec["affinity"] = affinity
        return await create_owned(self.client, PODS, pod)

    async def _update_status(self, ds: Obj, plan: list[tuple[str, bool, bool]], by_node: dict[str, list[Obj]],
                             current_hash: str, collisions: int) -> None:
        mrs = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        desired = scheduled = misscheduled = ready = available = updated = 0
        for name, should_run, _ in plan:
            live = [p for p in by_node.get(name, []) if not meta(p).get("deletionTimestamp")]
            if should_run:
                desired += 1
                if live:
                    scheduled += 1
                    ready += any(is_pod_ready(p) for p in live)
                    available += any(is_pod_available(p, mrs) for p in live)
                    updated += any(is_updated(ds, p, current_hash) for p in live)
            elif live:
                misscheduled += 1
        status: dict[str, Any] = {
            "desiredNumberScheduled": desired, "currentNumberScheduled": scheduled,
            "numberMisscheduled": misscheduled, "numberReady": ready, "numberAvailable": available,
            "numberUnavailable": desired - available, "updatedNumberScheduled": updated,
            "observedGeneration": meta(ds).get("generation", 0),
        }
        if collisions:
            status["collisionCount"] = collisions
        if mrs and ready > available:
            waits = [w for ps in by_node.values() for p in ps if (w := available_in(p, mrs))]
            if waits:
                self.queue.add_after(key_of(ds), min(waits) + 0.1)  # becomes available only later
        if status == (ds.get("status") or {}):
            return
        await write_status(self.client, DAEMONSETS, ds, status)


def is_updated(ds: Obj, pod: Obj, current_hash: str) -> bool:
    """Made from the current template: the revision hash says so, or the pod was made at the DaemonSet's
    current generation (Kubernetes' IsPodUpdated; it also keeps pods made before revisions existed)."""
    labels = meta(pod).get("labels") or {}
    return bool(current_hash) and labels.get(HASH_LABEL) == current_hash \
        or labels.get(GENERATION_LABEL) == str(meta(ds).get("generation", 1))


def _node_of(pod: Obj) -> str | None:
    return (pod.get("spec") or {}).get("nodeName")
