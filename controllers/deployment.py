"""Deployment controller: rolls a pod template out through ReplicaSets.

The ReplicaSet whose template equals the Deployment's (empty fields and the hash label
aside) is the "new" one (named <deployment>-<template hash>, labelled pod-template-hash);
all others are old. The new one carries the Deployment's annotations (change-cause, ...),
so that each revision in the history keeps the ones it was rolled out with.
RollingUpdate scales new up within maxSurge and old down within maxUnavailable,
one step per sync, re-triggered by ReplicaSet status changes; Recreate scales old
to zero, waits for their pods to be gone, then scales new up. A rollback is just a
template change back to an old ReplicaSet's template: that ReplicaSet becomes the
new one again and gets the next revision number.
"""
from __future__ import annotations

import copy
from typing import Any

from pklib.api.podtemplate import HASH_LABEL, same_template
from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_already_exists, is_not_found
from pklib.informer import Obj
from pklib.objects import key_of
from pklib.resources import DEPLOYMENTS, PODS, REPLICASETS

from . import deploymentutil as du
from .claims import claim
from .util import (controller_ref, meta, now, now_rfc3339, owner_reference, parse_time, selecting, selector_of,
                   template_hash, write_status)


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.d_informer = self.watch(DEPLOYMENTS, self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.rs_informer = self.watch(REPLICASETS, self._rs_changed, lambda old, new: self._rs_changed(new, old),
                                      self._rs_changed)
        self.pod_informer = self.watch(PODS, on_delete=self._pod_deleted)

    def _owner_key(self, obj: Obj) -> str | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        key = f"{meta(obj)['namespace']}/{ref['name']}"
        d = self.d_informer.store.get(key)
        return key if d is not None and meta(d).get("uid") == ref.get("uid") else None

    def _rs_changed(self, rs: Obj, old: Obj | None = None) -> None:
        for obj in (rs, old):
            if obj is None:
                continue
            key = self._owner_key(obj)
            if key is not None:
                self.queue.add(key)
            elif controller_ref(obj) is None:
                for d in selecting(self.d_informer.store, obj):
                    self.enqueue(d)

    def _pod_deleted(self, pod: Obj) -> None:
        # Recreate waits until the old pods are gone; only then may the new ReplicaSet grow.
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rs_informer.store.get(f"{meta(pod)['namespace']}/{ref['name']}")
        if rs is not None:
            key = self._owner_key(rs)
            if key is not None:
                self.queue.add(key)

    # -- reconcile ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        d = self.d_informer.store.get(key)
        if d is None:
            return
        d = copy.deepcopy(d)
        selector = selector_of(d)
        if selector is None:
            self.recorder.warning(d, "SelectingAll", "This deployment is selecting all pods. "
                                  "A non-empty selector is required.")
            return
        ns = meta(d)["namespace"]
        owned = await claim(self.client, REPLICASETS, d, self.rs_informer.store.by_index("namespace", ns), selector)
        rss = copy.deepcopy(owned)  # the rollout steps update these copies as they write
        if meta(d).get("deletionTimestamp"):
            new_rs = du.find_new_rs(d, rss)
            await self._sync_status(d, rss, new_rs)
            return
        spec = d.get("spec") or {}
        if spec.get("paused") or self._is_scaling_event(d, rss):
            await self._sync_scale_only(d, rss)
        elif du.is_rolling(d):
            await self._rollout_rolling(d, rss)
        else:
            await self._rollout_recreate(d, rss)

    def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        want = str(du.replicas_of(d))
        for rs in rss:
            if du.replicas_of(rs) > 0:
                desired = (meta(rs).get("annotations") or {}).get(du.DESIRED_REPLICAS)
                if desired is not None and desired != want:
                    return True
        return False

    async def _new_and_old(self, d: Obj, rss: list[Obj], create: bool) -> tuple[Obj | None, list[Obj]]:
        """Find (or create) the new ReplicaSet and bring its revision up to date."""
        new_rs = du.find_new_rs(d, rss)
        old = [rs for rs in rss if new_rs is None or meta(rs)["uid"] != meta(new_rs)["uid"]]
        max_old = max((du.revision_of(rs) for rs in old), default=0)
        revision = max_old + 1
        if new_rs is not None:
            current = meta(new_rs).get("annotations") or {}
            if du.new_rs_annotations(d, current, revision) != current or self._annotations_stale(d, new_rs) \
                    or self._min_ready_stale(d, new_rs):
                new_rs = await self._update_rs(d, new_rs, du.replicas_of(new_rs), revision)
        elif create:
            new_rs = await self._create_new_rs(d, rss, revision)
        if new_rs is not None:
            await self._set_deployment_revision(d, du.revision_of(new_rs))
        return new_rs, old

    def _annotations_stale(self, d: Obj, rs: Obj) -> bool:
        ann = meta(rs).get("annotations") or {}
        surge, _ = du.fenceposts(d)
        return (ann.get(du.DESIRED_REPLICAS) != str(du.replicas_of(d))
                or ann.get(du.MAX_REPLICAS) != str(du.replicas_of(d) + surge))

    def _min_ready_stale(self, d: Obj, rs: Obj) -> bool:
        return bool(int((rs.get("spec") or {}).get("minReadySeconds") or 0)
                    != int((d.get("spec") or {}).get("minReadySeconds") or 0))

    async def _create_new_rs(self, d: Obj, rss: list[Obj], revision: int) -> Obj:
        spec = d["spec"]
        collisions = int((d.get("status") or {}).get("collisionCount") or 0)
        template = copy.deepcopy(spec.get("template") or {})
        h = template_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        surge, _ = du.fenceposts(d)
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta(d)['name']}-{h}", "namespace": meta(d)["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": {**du.new_rs_annotations(d, {}, revision),
                                         du.DESIRED_REPLICAS: str(du.replicas_of(d)),
                                         du.MAX_REPLICAS: str(du.replicas_of(d) + surge)},
                         "ownerReferences": [owner_reference(d)]},
            "spec": {"replicas": 0, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                     "selector": selector, "template": template},
        }
        rs["spec"]["replicas"] = du.new_rs_replicas(d, rss, None)
        try:
            created = await self.client.create(REPLICASETS, rs)
        except ApiError as e:
            if not is_already_exists(e):
                raise
            existing = await self.client.get(REPLICASETS, rs["metadata"]["name"], meta(d)["namespace"])
            ref = controller_ref(existing)
            if ref is not None and ref.get("uid") == meta(d)["uid"] \
                    and same_template(existing["spec"]["template"], template):
                return existing
            # A different template hashed to the same name: bump collisionCount and retry.
            status = copy.deepcopy(d.get("status") or {})
            status["collisionCount"] = collisions + 1
            await self.client.update_status(DEPLOYMENTS, {**d, "status": status})
            raise
        self.recorder.normal(d, "ScalingReplicaSet",
                             f"Scaled up replica set {created['metadata']['name']} to {rs['spec']['replicas']}")
        return created

    async def _update_rs(self, d: Obj, rs: Obj, replicas: int, revision: int | None = None) -> Obj:
        body = copy.deepcopy(rs)
        if revision is not None:  # only the new ReplicaSet gets a revision, and the Deployment's annotations
            body["metadata"]["annotations"] = du.new_rs_annotations(d, meta(rs).get("annotations") or {}, revision)
        ann = body["metadata"].setdefault("annotations", {})
        surge, _ = du.fenceposts(d)
        ann[du.DESIRED_REPLICAS] = str(du.replicas_of(d))
        ann[du.MAX_REPLICAS] = str(du.replicas_of(d) + surge)
        body["spec"]["replicas"] = replicas
        # minReadySeconds follows the Deployment's.
        body["spec"]["minReadySeconds"] = int((d.get("spec") or {}).get("minReadySeconds") or 0)
        updated = await self.client.update(REPLICASETS, body)
        old_n = du.replicas_of(rs)
        if replicas != old_n:
            verb = "up" if replicas > old_n else "down"
            self.recorder.normal(d, "ScalingReplicaSet",
                                 f"Scaled {verb} replica set {meta(rs)['name']} from {old_n} to {replicas}")
        return updated

    async def _set_deployment_revision(self, d: Obj, revision: int) -> None:
        ann = meta(d).setdefault("annotations", {})
        if ann.get(du.REVISION) == str(revision):
            return
        ann[du.REVISION] = str(revision)
        updated = await self.client.update(DEPLOYMENTS, d)
        d["metadata"] = updated["metadata"]

    async def _scale(self, d: Obj, rs: Obj, replicas: int) -> Obj:
        if du.replicas_of(rs) == replicas and not self._annotations_stale(d, rs):
            return rs
        return await self._update_rs(d, rs, replicas)

    # -- strategies -----------------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old = await self._new_and_old(d, rss, create=True)
        assert new_rs is not None
        all_rss = old + [new_rs]
        # Step 1: grow the new ReplicaSet as far as maxSurge allows.
        target = du.new_rs_replicas(d, all_rss, new_rs)
        if target != du.replicas_of(new_rs):
            await self._scale(d, new_rs, target)
            await self._sync_status(d, all_rss, new_rs)
            return
        # Step 2: shrink old ones as far as maxUnavailable allows: unhealthy replicas first, then oldest.
        if await self._scale_down_old(d, old, new_rs):
            await self._sync_status(d, all_rss, new_rs)
            return
        await self._finish(d, old, all_rss, new_rs)

    async def _scale_down_old(self, d: Obj, old: list[Obj], new_rs: Obj) -> bool:
        active_old = sorted([rs for rs in old if du.replicas_of(rs) > 0],
                            key=lambda rs: meta(rs).get("creationTimestamp") or "")
        if not active_old:
            return False
        budget = du.max_old_scale_down(d, old + [new_rs], new_rs)
        if budget <= 0:
            return False
        scaled = False
        for rs in active_old:  # replicas that are not available anyway cost no availability
            if budget <= 0:
                break
            unhealthy = du.replicas_of(rs) - du.status_of(rs, "availableReplicas")
            n = min(budget, max(0, unhealthy))
            if n:
                rs_new = await self._scale(d, rs, du.replicas_of(rs) - n)
                rs.update(rs_new)
                budget -= n
                scaled = True
        min_available = du.replicas_of(d) - du.max_unavailable(d)
        available = sum(du.status_of(rs, "availableReplicas") for rs in old + [new_rs])
        budget = min(budget, available - min_available)
        for rs in active_old:
            if budget <= 0:
                break
            n = min(budget, du.replicas_of(rs))
            if n:
                await self._scale(d, rs, du.replicas_of(rs) - n)
                budget -= n
                scaled = True
        return scaled

    async def _rollout_recreate(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old = await self._new_and_old(d, rss, create=False)
        all_rss = old + ([new_rs] if new_rs else [])
        scaled = False
        for rs in old:
            if du.replicas_of(rs) > 0:
                await self._scale(d, rs, 0)
                scaled = True
        if scaled:
            await self._sync_status(d, all_rss, new_rs)
            return
        old_uids = {meta(rs)["uid"] for rs in old}
        if any(self.pod_informer.store.by_index("owner", uid) for uid in old_uids) \
                or any(du.status_of(rs, "replicas") for rs in old):
            # Old pods still exist (maybe terminating): the new ones must wait.
            await self._sync_status(d, all_rss, new_rs)
            return
        if new_rs is None:
            new_rs, old = await self._new_and_old(d, rss, create=True)
            assert new_rs is not None
            all_rss = old + [new_rs]
        if du.replicas_of(new_rs) != du.replicas_of(d):
            await self._scale(d, new_rs, du.replicas_of(d))
            await self._sync_status(d, all_rss, new_rs)
            return
        await self._finish(d, old, all_rss, new_rs)

    async def _sync_scale_only(self, d: Obj, rss: list[Obj]) -> None:
        """Paused, or replicas changed mid-rollout: resize without rolling anything out."""
        new_rs, old = await self._new_and_old(d, rss, create=False)
        all_rss = old + ([new_rs] if new_rs else [])
        active = [rs for rs in all_rss if du.replicas_of(rs) > 0]
        desired = du.replicas_of(d)
        if len(active) <= 1:
            target = active[0] if active else (new_rs or max(old, key=du.revision_of, default=None))
            if target is not None:
                await self._scale(d, target, desired)
        elif new_rs is not None and du.replicas_of(new_rs) == desired \
                and du.status_of(new_rs, "availableReplicas") == desired:
            for rs in active:
                if rs is not new_rs:
                    await self._scale(d, rs, 0)
        else:
            surge, _ = du.fenceposts(d)
            delta = desired + surge - sum(du.replicas_of(rs) for rs in active)
            shares = du.proportions(d, active, delta)
            for rs in active:
                await self._scale(d, rs, max(0, du.replicas_of(rs) + shares.get(meta(rs)["name"], 0)))
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old)
        await self._sync_status(d, all_rss, new_rs)

    async def _finish(self, d: Obj, old: list[Obj], all_rss: list[Obj], new_rs: Obj) -> None:
        status = du.calculate_status(d, all_rss, new_rs)
        if du.is_complete(d, status):
            await self._cleanup(d, old)
        await self._sync_status(d, all_rss, new_rs)

    async def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        for rs in du.history_to_delete(d, old):
            try:
                await self.client.delete(REPLICASETS, meta(rs)["name"], meta(rs)["namespace"])
            except ApiError as e:
                if not is_not_found(e):
                    raise

    # -- status ---------------------------------------------------------------------------------

    async def _sync_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> None:
        # Re-read the ReplicaSets from the cache: a scale we just wrote changed only their spec.
        fresh = [self.rs_informer.store.get(key_of(rs)) or rs for rs in all_rss]
        new_fresh = self.rs_informer.store.get(key_of(new_rs)) if new_rs is not None else None
        status = du.calculate_status(d, fresh, new_fresh or new_rs)
        self._progress_condition(d, status, new_rs)
        if status == (d.get("status") or {}):
            return
        await write_status(self.client, DEPLOYMENTS, d, status)

    def _progress_condition(self, d: Obj, status: dict[str, Any], new_rs: Obj | None) -> None:
        spec = d.get("spec") or {}
        name = meta(new_rs)["name"] if new_rs is not None else ""
        if spec.get("paused"):
            du.set_condition(status, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
            return
        cur = du.get_condition(status, "Progressing")
        if cur is not None and cur.get("reason") == "DeploymentPaused":
            du.set_condition(status, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
            return
        if new_rs is None:
            return
        if du.is_complete(d, status):
            du.set_condition(status, "Progressing", "True", "NewReplicaSetAvailable",
                             f'ReplicaSet "{name}" has successfully progressed.')
            return
        progressing = du.is_progressing(d, status)
        if progressing or cur is None or cur.get("reason") == "NewReplicaSetAvailable" \
                or f'"{name}"' not in (cur.get("message") or ""):
            du.set_condition(status, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
            cur = du.get_condition(status, "Progressing")
            if cur is not None and progressing:
                # Progress restarts the deadline clock even when the condition text is unchanged.
                cur["lastUpdateTime"] = now_rfc3339()
        deadline = int(spec.get("progressDeadlineSeconds") or du.DEFAULT_PROGRESS_DEADLINE)
        if cur is None or cur.get("reason") == "ProgressDeadlineExceeded":
            return
        last = parse_time(cur.get("lastUpdateTime"))
        if last is None:
            return
        left = deadline - (now() - last).total_seconds()
        if left <= 0:
            du.set_condition(status, "Progressing", "False", "ProgressDeadlineExceeded",
                             f'ReplicaSet "{name}" has timed out progressing.')
            self.recorder.warning(d, "ProgressDeadlineExceeded", f'ReplicaSet "{name}" has timed out progressing.')
        else:
            self.enqueue_after(d, left + 0.5)

