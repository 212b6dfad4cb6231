"""POST pods/NAME/eviction: a pod deletion that honours the PodDisruptionBudget covering the pod
(Kubernetes' pkg/registry/core/pod/storage/eviction.go).

A pod that is finished, pending or already terminating is simply deleted. Otherwise the one budget selecting it
must allow a disruption: its status.disruptionsAllowed is decremented and the pod recorded in
status.disruptedPods in one revision-checked write, so two evictions racing for the last allowed disruption
cannot both pass. A refusal is 429 TooManyRequests with a DisruptionBudget cause, which clients (kubectl drain)
retry. Then the pod gets the DisruptionTarget condition and is deleted with the eviction's deleteOptions.
"""
from __future__ import annotations

import asyncio
import copy
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from multidict import MultiDict

from pklib.api import disruption
from pklib.api.timefmt import now_rfc3339
from pklib.resources import PODDISRUPTIONBUDGETS, PODS

from . import bodies, deletion
from .handlers_objects import Objects, clone_stored, collection_prefix
from .status import StatusError, bad_request
from .storage.interface import Entry

API_VERSIONS = (None, "policy/v1", "policy/v1beta1")
SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


# Evictions against one budget take turns within this apiserver (budget key -> lock, users): concurrent ones
# would otherwise mostly conflict on the budget's revision and exhaust their retries. Across apiservers, and
# against the disruption controller, the revision check alone keeps the count right.
_TURNS: dict[str, tuple[asyncio.Lock, int]] = {}


@asynccontextmanager
async def _turn(key: str) -> AsyncIterator[None]:
    lock, users = _TURNS.get(key, (asyncio.Lock(), 0))
    _TURNS[key] = (lock, users + 1)
    try:
        async with lock:
            yield
    finally:
        lock, users = _TURNS[key]
        if users == 1:
            del _TURNS[key]
        else:
            _TURNS[key] = (lock, users - 1)


def _too_many_requests(message: str, retry_after: int = 0) -> StatusError:
    details: dict[str, Any] = {"causes": [{"reason": disruption.DISRUPTION_BUDGET_CAUSE, "message": message}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after  # also sent as Retry-After (status.status_response)
    return StatusError(429, "TooManyRequests", disruption.VIOLATION_MESSAGE, details)


def parse_options(eviction: dict[str, Any], name: str, dry_run: bool) -> deletion.DeleteOptions:
    if eviction.get("kind") not in (None, "Eviction") or eviction.get("apiVersion") not in API_VERSIONS:
        raise bad_request(f"expected a policy/v1 Eviction, got {eviction.get('apiVersion')}/{eviction.get('kind')}")
    if bodies.member(eviction, "metadata").get("name") not in (None, "", name):
        raise bad_request("name in URL does not match name in Eviction object")
    # The eviction's deleteOptions come from its body only: no query parameters.
    opts = deletion.DeleteOptions.parse(bodies.member(eviction, "deleteOptions"), MultiDict())
    opts.dry_run = opts.dry_run or dry_run
    return opts


def _decrement(pod_name: str, dry_run: bool) -> Any:
    """The PDB status update of one allowed disruption, refusing (429/403) when there is none."""
    def mutate(entry: Entry) -> dict[str, Any]:
        pdb = clone_stored(entry.value)
        meta, status = pdb.get("metadata") or {}, pdb.setdefault("status", {})
        name = meta.get("name", "")
        if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
            raise _too_many_requests(disruption.processing_message(name), 10)
        allowed = int(status.get("disruptionsAllowed") or 0)
        forbidden = f'poddisruptionbudgets.policy "{name}" is forbidden: '
        if allowed < 0:
            raise StatusError(403, "Forbidden", forbidden + "pdb disruptions allowed is negative")
        if len(status.get("disruptedPods") or {}) > disruption.MAX_DISRUPTED_PODS:
            raise StatusError(403, "Forbidden", forbidden + "DisruptedPods map too big - too many evictions not "
                                                            "confirmed by PDB controller")
        if allowed == 0:
            raise _too_many_requests(disruption.needs_healthy_message(
                name, int(status.get("desiredHealthy") or 0), int(status.get("currentHealthy") or 0)))
        status["disruptionsAllowed"] = allowed - 1
        at = now_rfc3339()
        if allowed == 1:
            disruption.set_allowed_condition(pdb, status, disruption.INSUFFICIENT_PODS, "", at)
        if not dry_run:
            status["disruptedPods"] = {**(status.get("disruptedPods") or {}), pod_name: at}
        return pdb
    return mutate


async def _budgets_of(objects: Objects, pod: dict[str, Any]) -> list[dict[str, Any]]:
    meta = pod.get("metadata") or {}
    listed = await objects.storage.list(collection_prefix(PODDISRUPTIONBUDGETS, meta.get("namespace")))
    return [e.value for e in listed.entries if disruption.selects(e.value, meta.get("labels"))]


def _needs_decrement(pdb: dict[str, Any], pod: dict[str, Any]) -> bool:
    """An unready pod does not count as healthy: evicting it takes nothing from the budget when the policy
    is AlwaysAllow or the budget is met anyway."""
    if disruption.is_pod_ready(pod):
        return True
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == disruption.ALWAYS_ALLOW:
        return False
    status = pdb.get("status") or {}
    desired = int(status.get("desiredHealthy") or 0)
    return not (desired > 0 and int(status.get("currentHealthy") or 0) >= desired)


async def _mark_disrupted(objects: Objects, namespace: str, name: str, opts: deletion.DeleteOptions) -> None:
    """Add the DisruptionTarget condition (the pod's containers learn why they are stopped) and carry a
    resourceVersion precondition over to the new revision."""
    def mutate(entry: Entry) -> dict[str, Any]:
        deletion.check_preconditions(PODS, entry, opts)
        pod = clone_stored(entry.value)
        status = pod.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != disruption.DISRUPTION_TARGET]
        conditions.append({"type": disruption.DISRUPTION_TARGET, "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": now_rfc3339(), "reason": "EvictionByEvictionAPI",
                           "message": "Eviction API: evicting"})
        status["conditions"] = conditions
        return pod

    updated = await objects.guaranteed_update(PODS, namespace, name, mutate)
    if opts.precondition_rv:
        opts.precondition_rv = str((updated.get("metadata") or {}).get("resourceVersion") or "")


async def evict(objects: Objects, namespace: str, name: str, eviction: dict[str, Any],
                dry_run: bool) -> dict[str, Any]:
    opts = parse_options(eviction, name, dry_run)
    entry = await objects.read(PODS, namespace, name)
    pod = entry.value
    if not disruption.ignores_budget(pod):
        budgets = await _budgets_of(objects, pod)
        if len(budgets) > 1:
            raise StatusError(500, "InternalError", f"Internal error occurred: {disruption.MULTIPLE_BUDGETS_MESSAGE}",
                              {"causes": [{"message": disruption.MULTIPLE_BUDGETS_MESSAGE}]})
        if budgets:
            pdb = budgets[0]
            if _needs_decrement(pdb, pod):
                pdb_name = pdb["metadata"]["name"]
                async with _turn(f"{namespace}/{pdb_name}"):
                    await objects.guaranteed_update(PODDISRUPTIONBUDGETS, namespace, pdb_name,
                                                    _decrement(name, opts.dry_run), dry_run=opts.dry_run,
                                                    fresh=True)
            elif not opts.precondition_rv:
                # The pod was let go because it is unhealthy: delete it only as it was seen.
                opts = copy.copy(opts)
                opts.precondition_rv = str(entry.mod_revision)
    if not opts.dry_run and not (pod.get("metadata") or {}).get("deletionTimestamp"):
        await _mark_disrupted(objects, namespace, name, opts)
    await deletion.delete(objects, PODS, namespace, name, opts)
    return dict(SUCCESS)
