"""The scheduling loop: pop a pending pod, decide, assume, bind in the background.

Informers keep the cache (nodes, pods on nodes) and the queue (pending pods) current;
the loop never waits for a binding to finish before deciding the next pod, because
the pod it just placed is already *assumed* in the cache. A bounded number of bindings
is in flight at once, which is what makes hundreds of pods per second possible.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Coroutine

from pklib.client import Client
from pklib.errors import ApiError, ConnectionFailed, is_conflict, is_not_found
from pklib.events import EventRecorder
from pklib.informer import Handler, InformerFactory, Obj, Store
from pklib.api.disruption import PREEMPTION_BY_SCHEDULER, disruption_status_patch
from pklib.api.timefmt import now_rfc3339
from pklib.objects import key_of
from pklib.quantity import QuantityError
from pklib.resources import (NAMESPACES, NODES, PODS, PVCS, PVS, REPLICASETS, SERVICES, STATEFULSETS,
                             STORAGECLASSES)
from pklib.selectors import SelectorError, selector_from_match

from .algorithm import (DEFAULT_WEIGHTS, Decision, dry_run_filters, end_cycle, pre_bind, pre_filter,
                        preemption_message, reserve, schedule, unreserve, unresolvable, unschedulable_message)
from .cache import Cache
from .framework import NodeInfo, PodInfo, pod_info
from .preemption import Candidate, preempt
from .queue import SchedulingQueue

log = logging.getLogger("scheduler")


DEFAULT_SCHEDULER_NAME = "default-scheduler"


@dataclass
class Options:
    weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    percentage_of_nodes_to_score: int = 0
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    parallel_bindings: int = 64


def _is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Scheduler:
    def __init__(self, client: Client, recorder: EventRecorder, informers: InformerFactory,
                 options: Options | None = None):
        self.client = client
        self.recorder = recorder
        self.options = options or Options()
        self.cache = Cache()
        self.queue = SchedulingQueue()
        self.pods = informers.informer(PODS)
        self.nodes = informers.informer(NODES)
        self.pvcs = informers.informer(PVCS)
        self.pvs = informers.informer(PVS)
        self.storage_classes = informers.informer(STORAGECLASSES)
        self.namespaces = informers.informer(NAMESPACES)
        self.services = informers.informer(SERVICES)
        self.replicasets = informers.informer(REPLICASETS)
        self.statefulsets = informers.informer(STATEFULSETS)
        self.listers = _InformerListers(self.pvcs.store, self.pvs.store, self.cache, self.namespaces.store,
                                        (self.services.store, self.replicasets.store, self.statefulsets.store),
                                        self.storage_classes.store)
        self.pods.add_handler(Handler(self._pod_added, self._pod_updated, self._pod_deleted))
        self.nodes.add_handler(Handler(self._node_changed, lambda old, new: self._node_changed(new),
                                       self._node_deleted))
        retry = Handler(lambda obj: self.queue.move_all_to_active(),
                        lambda old, new: self.queue.move_all_to_active())
        self.pvcs.add_handler(retry)
        self.pvs.add_handler(retry)
        self.storage_classes.add_handler(retry)
        # Namespace labels decide pod affinity terms with a namespaceSelector.
        self.namespaces.add_handler(retry)
        self._bindings = asyncio.Semaphore(self.options.parallel_bindings)
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_start = 0
        # Pods that preempted others, waiting for their victims to go: pod key -> (nominated node, the pod). Their
        # room on that node is kept from pods of lower or equal priority, as Kubernetes does.
        self._nominated: dict[str, tuple[str, PodInfo]] = {}
        # Unschedulable pods that a newly placed pod may help (pod affinity, topology spread): retried on a binding.
        self._waiting_for_pods: dict[str, int] = {}  # key -> priority
        self._rng = random.Random()
        # For /metrics: attempts by result (scheduled, unschedulable, error) and decision time.
        self.attempts: Counter[str] = Counter()
        self.algorithm_seconds = 0.0
        self.algorithm_runs = 0
        self.preemption_attempts = 0  # preemptions that nominated a node
        self.preemption_victims = 0

    # -- informer handlers: keep cache and queue current, nothing else -------------------------

    def _responsible_for(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return ((spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.options.scheduler_name
                and not (pod.get("metadata") or {}).get("deletionTimestamp") and not _is_terminal(pod))

    def _pod_added(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            if not _is_terminal(pod):
                self.cache.set_pod(pod, key_of(pod))
                self._retry_waiting_for_pods()
        elif self._responsible_for(pod):
            self.queue.add(key_of(pod), int((pod.get("spec") or {}).get("priority") or 0))

    def _pod_updated(self, old: Obj, pod: Obj) -> None:
        key = key_of(pod)
        if (pod.get("spec") or {}).get("nodeName"):
            self.queue.delete(key)
            if _is_terminal(pod):
                # A finished pod no longer uses its node's resources.
                self.cache.remove_pod(key)
                self.queue.move_all_to_active()
            else:
                self.cache.set_pod(pod, key)
                if not (old.get("spec") or {}).get("nodeName"):
                    self._retry_waiting_for_pods()
        elif not self._responsible_for(pod):
            self.queue.delete(key)
        elif _scheduling_relevant_change(old, pod):
            self.queue.update(key, int((pod.get("spec") or {}).get("priority") or 0))

    def _pod_deleted(self, pod: Obj) -> None:
        key = key_of(pod)
        self.queue.delete(key)
        self._nominated.pop(key, None)
        self._waiting_for_pods.pop(key, None)
        if self.cache.is_placed(key):
            self.cache.remove_pod(key)
            self.queue.move_all_to_active()

    def _retry_waiting_for_pods(self) -> None:
        """A pod was placed: the pods whose pod affinity or spreading failed may fit now (Kubernetes' AssignedPodAdd
        event for InterPodAffinity and PodTopologySpread)."""
        if self._waiting_for_pods:
            waiting, self._waiting_for_pods = self._waiting_for_pods, {}
            for key, priority in waiting.items():
                if key in self.queue:
                    self.queue.update(key, priority)

    def _node_changed(self, node: Obj) -> None:
        try:
            self.cache.set_node(node)
        except QuantityError as e:
            log.warning("node %s: bad allocatable (%s); ignoring it", key_of(node), e)
            return
        self.queue.move_all_to_active()

    def _node_deleted(self, node: Obj) -> None:
        self.cache.remove_node(key_of(node))

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        flusher = asyncio.create_task(self.queue.run_flusher(), name="scheduler:queue-flusher")
        try:
            while True:
                key = await self.queue.pop()
                # Back-pressure: decide the next pod only while a binding slot is free.
                await self._bindings.acquire()
                binding = False
                try:
                    binding = await self.schedule_one(key)
                except Exception:  # noqa: BLE001 - one odd pod must not stop scheduling for everyone
                    log.exception("scheduling %s failed", key)
                    self.attempts["error"] += 1
                    self.queue.unschedulable(key)
                finally:
                    if not binding:
                        self._bindings.release()
        finally:
            flusher.cancel()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(flusher, *self._tasks, return_exceptions=True)

    async def schedule_one(self, key: str) -> bool:
        """Decide for one pod; True when its binding was started (it then owns a binding slot)."""
        pod = self.pods.store.get(key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or not self._responsible_for(pod):
            self.queue.done(key)
            return False
        try:
            info = pod_info(pod)
        except QuantityError as e:
            self.queue.unschedulable(key)
            self._background(self._report_unschedulable(pod, f"invalid resource request: {e}"), key)
            return False
        started = time.perf_counter()
        pre_filter(info, self.listers)
        nodes = self._with_nominated(info, self.cache.nodes())
        start = self._next_start % len(nodes) if nodes else 0
        decision = schedule(info, nodes, self.options.weights, start, self.options.percentage_of_nodes_to_score,
                            self._rng)
        self.algorithm_seconds += time.perf_counter() - started
        self.algorithm_runs += 1
        if nodes:
            self._next_start = (start + decision.evaluated) % len(nodes)
        if decision.node is None:
            self.attempts["unschedulable"] += 1
            self.queue.unschedulable(key)
            if info.has_pod_affinity or info.spec.get("topologySpreadConstraints"):
                self._waiting_for_pods[key] = info.priority
            tail, nominated = self._post_filter(info, nodes, decision)
            end_cycle(info)
            # Reported in the background: the next pod need not wait for this status write.
            self._background(self._report_unschedulable(pod, unschedulable_message(decision, tail), nominated), key)
            return False
        self._nominated.pop(key, None)
        self._waiting_for_pods.pop(key, None)
        end_cycle(info)
        self.cache.assume(info, decision.node)
        reserve(info, decision.node, self.listers)
        task = self._background(self._bind(info, decision.node), key)
        task.add_done_callback(lambda _: self._bindings.release())
        return True

    def _post_filter(self, info: PodInfo, nodes: list[NodeInfo], decision: Decision) -> tuple[str, str | None]:
        """Preemption: the `preemption:` tail of the message ("" when a node was nominated) and the
        nominatedNodeName to write (None: leave it as it is, "": clear it)."""
        if not nodes:
            return "", None
        info.nominated_node = info.nominated_node or self._nominated.get(info.key, ("", info))[0]
        outcome = preempt(info, nodes, decision.failed, dry_run_filters(self.listers), unresolvable, self.cache.node)
        if outcome.candidate is None:
            if outcome.message:
                return outcome.message, None
            self._nominated.pop(info.key, None)
            return preemption_message(len(nodes), "", outcome.reasons), ""
        candidate = outcome.candidate
        self._nominated[info.key] = (candidate.node, info)
        self.preemption_attempts += 1
        self.preemption_victims += len(candidate.victims)
        self._background(self._evict(info, candidate), info.key)
        return "", candidate.node

    def _with_nominated(self, info: PodInfo, nodes: list[NodeInfo]) -> list[NodeInfo]:
        """`nodes`, where a node nominated for another pod of at least this priority counts that pod as placed."""
        if not self._nominated:
            return nodes
        waiting: dict[str, list[PodInfo]] = {}
        for key, (node, nominee) in self._nominated.items():
            if key != info.key and nominee.priority >= info.priority:
                waiting.setdefault(node, []).append(nominee)
        if not waiting:
            return nodes
        out = []
        for n in nodes:
            if n.name in waiting:
                n = n.clone()
                for nominee in waiting[n.name]:
                    n.add_pod(nominee)
            out.append(n)
        return out

    async def _evict(self, preemptor: PodInfo, candidate: Candidate) -> None:
        """Delete the victims gracefully (their termination grace period applies), with a Preempted event."""
        for victim in candidate.victims:
            ns, name = victim.key.split("/", 1)
            scheduler_name = (victim.pod.get("spec") or {}).get("schedulerName") or "default-scheduler"
            try:
                await self.client.patch(PODS, name, disruption_status_patch(
                    PREEMPTION_BY_SCHEDULER, f"{scheduler_name}: preempting to accommodate a higher priority pod"),
                    ns, patch_type="strategic", subresource="status")
                await self.client.delete(PODS, name, ns)
            except ApiError as e:
                if not is_not_found(e):
                    log.warning("could not preempt %s for %s: %s", victim.key, preemptor.key, e.message)
                continue
            except ConnectionFailed as e:
                log.warning("could not preempt %s for %s: %s", victim.key, preemptor.key, e)
                continue
            victim.terminating = True
            self.recorder.normal(victim.pod, "Preempted",
                                 f"Preempted by pod {preemptor.uid} on node {candidate.node}")

    def _background(self, work: Coroutine[Any, Any, None], key: str) -> asyncio.Task[None]:
        """An owned task: cancelled on shutdown, and a crash is logged at once, never lost."""
        task = asyncio.create_task(work, name=key)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work for %s crashed", task.get_name(), exc_info=task.exception())

    async def _bind(self, info: PodInfo, node_name: str) -> None:
        ns, name = info.key.split("/", 1)
        try:
            await pre_bind(info, node_name, self.client)
            await self.client.create(PODS, {
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": info.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
            }, ns, subresource="binding", name=name)
        except (ApiError, ConnectionFailed) as e:
            unreserve(info)
            self.cache.forget(info.key)
            if isinstance(e, ApiError) and (is_not_found(e) or is_conflict(e)):
                # Deleted meanwhile, or bound by someone else: the informer will tell us.
                self.queue.done(info.key)
                return
            log.warning("binding %s to %s failed: %s", info.key, node_name, e)
            self.attempts["error"] += 1
            self.queue.unschedulable(info.key)
            self.queue.move_all_to_active()
            return
        self.queue.done(info.key)
        self.attempts["scheduled"] += 1
        self.recorder.normal(info.pod, "Scheduled", f"Successfully assigned {info.key} to {node_name}")

    async def _report_unschedulable(self, pod: Obj, message: str, nominated: str | None = None) -> None:
        """PodScheduled=False/Unschedulable (written only when it changed), status.nominatedNodeName when
        preemption decided it, and a FailedScheduling Event."""
        self.recorder.warning(pod, "FailedScheduling", message)
        if _has_condition(pod, message) and _nomination_holds(pod, nominated):
            return
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for _ in range(3):
            try:
                await self.client.update_status(PODS, _with_condition(pod, message, nominated))
                return
            except ApiError as e:
                if is_not_found(e):
                    return
                if not is_conflict(e):
                    log.warning("could not report %s/%s unschedulable: %s", ns, name, e.message)
                    return
            except ConnectionFailed as e:
                log.warning("could not report %s/%s unschedulable: %s", ns, name, e)
                return
            try:
                pod = await self.client.get(PODS, name, ns)
            except (ApiError, ConnectionFailed):
                return
            if (pod.get("spec") or {}).get("nodeName") or (_has_condition(pod, message)
                                                            and _nomination_holds(pod, nominated)):
                return


class _InformerListers:
    """The plugins' read-only view of the scheduler's cache and informer stores."""

    def __init__(self, claims: Store, volumes: Store, cache: Cache, namespaces: Store,
                 workloads: tuple[Store, ...], storage_classes: Store):
        self._claims, self._volumes, self._cache, self._namespaces = claims, volumes, cache, namespaces
        self._workloads, self._storage_classes = workloads, storage_classes

    def claim(self, namespace: str, name: str) -> Obj | None:
        return self._claims.get(f"{namespace}/{name}")

    def volume(self, name: str) -> Obj | None:
        return self._volumes.get(name)

    def storage_class(self, name: str) -> Obj | None:
        return self._storage_classes.get(name)

    def volumes(self) -> list[Obj]:
        return self._volumes.list()

    def nodes(self) -> list[NodeInfo]:
        return self._cache.nodes()

    def nodes_with_pods_in(self, namespace: str) -> list[NodeInfo]:
        return self._cache.nodes_with_pods_in(namespace)

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        ns = self._namespaces.get(name)
        return None if ns is None else (ns.get("metadata") or {}).get("labels") or {}

    def owner_selectors(self, pod: PodInfo) -> list[dict[str, Any]]:
        return workload_selectors(pod, self._workloads)

    def affinity_pods(self) -> int:
        return len(self._cache.affinity_pods)


def workload_selectors(pod: PodInfo, stores: tuple[Store, ...]) -> list[dict[str, Any]]:
    """Kubernetes' DefaultSelector: the selectors of the Services (a label map), ReplicaSets and StatefulSets
    (a LabelSelector) in the pod's namespace that select its labels."""
    if not pod.labels:
        return []
    out: list[dict[str, Any]] = []
    for store in stores:
        for obj in store.by_index("namespace", pod.namespace):
            raw = (obj.get("spec") or {}).get("selector")
            if not raw:
                continue
            selector = {"matchLabels": raw} if obj.get("kind") == "Service" else raw
            try:
                if selector_from_match(selector).matches(pod.labels):
                    out.append(selector)
            except SelectorError:
                continue
    return out


def _scheduling_relevant_change(old: Obj, new: Obj) -> bool:
    """Like Kubernetes' isPodUpdated: status writes (including our own Unschedulable condition)
    must not send a waiting pod round the queue again; spec, label or annotation changes may."""
    def relevant(pod: Obj) -> tuple[Any, ...]:
        meta = pod.get("metadata") or {}
        return pod.get("spec"), meta.get("labels"), meta.get("annotations")
    return relevant(old) != relevant(new)


def _scheduled_condition(pod: Obj) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "PodScheduled"), None)


def _has_condition(pod: Obj, message: str) -> bool:
    c = _scheduled_condition(pod)
    return bool(c and c.get("status") == "False" and c.get("reason") == "Unschedulable"
                and c.get("message") == message)


def _nomination_holds(pod: Obj, nominated: str | None) -> bool:
    return nominated is None or ((pod.get("status") or {}).get("nominatedNodeName") or "") == nominated


def _with_condition(pod: Obj, message: str, nominated: str | None = None) -> Obj:
    updated = copy.deepcopy(pod)
    status = updated.setdefault("status", {})
    if nominated:
        status["nominatedNodeName"] = nominated
    elif nominated == "":
        status.pop("nominatedNodeName", None)
    status.setdefault("phase", "Pending")
    previous = _scheduled_condition(pod)
    # Like Kubernetes, the transition time moves only when the condition's status does.
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == "False" else None
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                       "lastProbeTime": None, "lastTransitionTime": since or now_rfc3339()})
    status["conditions"] = conditions
    return updated
