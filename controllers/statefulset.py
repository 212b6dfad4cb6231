"""StatefulSet controller: pods with stable names, hostnames and volumes.

Pod k is named <set>-k, has hostname <set>-k and subdomain spec.serviceName, and
mounts PVCs <template>-<set>-k created from volumeClaimTemplates; the PVCs outlive
their pods, so a pod that comes back finds its data (unless
persistentVolumeClaimRetentionPolicy asks to delete them on scale-down or with the set).
OrderedReady creates 0..N-1 one at a time, each only once its predecessors are
Running and Ready, and removes from the highest ordinal down; Parallel does not
wait. RollingUpdate replaces pods from the highest ordinal down to `partition`,
one at a time, each once all pods are Ready again.

Each template the set rolls out is kept as a ControllerRevision (controllers/history.py); pods carry
the name of the revision that made them (controller-revision-hash) and status names the current and
the update revision, so a pod below the partition that gets deleted comes back with the current
revision's template, and `rollout undo` finds the old templates. revisionHistoryLimit trims the
revisions no pod and no status field still names.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from pklib.controller import ControllerContext
from pklib.errors import ApiError, is_already_exists, is_not_found
from pklib.informer import Obj, Store
from pklib.objects import key_of
from pklib.resources import CONTROLLERREVISIONS, PODS, PVCS, STATEFULSETS

from .claims import claim
from .history import (HASH_LABEL, POD_REVISION_LABEL, apply_revision, create_revision, delete_revisions,
                      new_revision, next_revision, renumber, sort_revisions, stale_revisions, template_patch)
from .util import (PodOwnerController, delete_pods, is_pod_ready, meta, owner_reference, pod_from_template,
                   selector_of, template_hash, write_status)


REVISION_LABEL = POD_REVISION_LABEL
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(set_name: str, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(set_name) + r"-(\d+)", meta(pod).get("name", ""))
    return int(m.group(1)) if m else None


def running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def revision_of(pod: Obj) -> str | None:
    return (meta(pod).get("labels") or {}).get(REVISION_LABEL)


class StatefulSetController(PodOwnerController):
    name = "statefulset"
    owner_kind = "StatefulSet"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.sts_informer = self.watch(STATEFULSETS, self.enqueue, lambda old, new: self.enqueue(new),
                                       lambda s: self.expectations.forget(key_of(s)))
        self.pod_informer = self.watch(PODS, self._pod_event, lambda old, new: self._pod_event(new),
                                       self._pod_deleted)
        self.pvc_informer = self.watch(PVCS)
        self.revision_informer = self.watch_revisions()

    def owner_store(self) -> Store:
        return self.sts_informer.store

    def _pod_event(self, pod: Obj) -> None:
        self._owned_pod_added(pod)

    # -- reconcile ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        sts = self._owner_to_sync(key)
        if sts is None:
            return
        ns, set_name = meta(sts)["namespace"], meta(sts)["name"]
        selector = selector_of(sts)
        pods = await claim(self.client, PODS, sts, self.pod_informer.store.by_index("namespace", ns), selector)
        status = sts.get("status") or {}
        if meta(sts).get("deletionTimestamp") or selector is None:
            # No history is written for a set that is going (or selects nothing); status stays as it was.
            update_name = status.get("updateRevision") or ""
            await self._update_status(sts, pods, status.get("currentRevision") or update_name, update_name,
                                      int(status.get("collisionCount") or 0))
            return
        # Orphaned revisions the selector matches are adopted, so a set recreated after an orphaning
        # delete takes its history back.
        revisions = sort_revisions(await claim(self.client, CONTROLLERREVISIONS, sts,
                                               self.revision_informer.store.by_index("namespace", ns), selector))
        current, update, collisions = await self._revisions(sts, revisions)
        pods = await self._relabel_legacy(sts, pods, update)
        by_ordinal = {o: p for p in pods if (o := ordinal_of(set_name, p)) is not None}
        if self.expectations.satisfied(key):
            await self._step(sts, key, by_ordinal, current, update)
        await self._update_status(sts, pods, meta(current)["name"], meta(update)["name"], collisions)
        live = {meta(current)["name"], meta(update)["name"]} | {r for p in pods if (r := revision_of(p))}
        limit = int((sts.get("spec") or {}).get("revisionHistoryLimit", 10))
        await delete_revisions(self.client, stale_revisions(revisions, live, limit))

    async def _relabel_legacy(self, sts: Obj, pods: list[Obj], update: Obj) -> list[Obj]:
        """Pods made before revisions were kept carry `<set>-<hash of the template>`; those made from the
        current template join the update revision under its name instead of being replaced for a label."""
        legacy = f"{meta(sts)['name']}-{template_hash((sts.get('spec') or {}).get('template') or {})}"
        out: list[Obj] = []
        for pod in pods:
            if revision_of(pod) == legacy != meta(update)["name"]:
                try:
                    pod = await self.client.patch(PODS, meta(pod)["name"], {"metadata": {"labels": {
                        REVISION_LABEL: meta(update)["name"]}}}, meta(pod)["namespace"])
                except ApiError as e:
                    if not is_not_found(e):
                        raise
                    continue
            out.append(pod)
        return out

    async def _revisions(self, sts: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """(current, update, collisionCount): Kubernetes' getStatefulSetRevisions.

        The update revision is the one whose data is the set's template: the newest revision if it
        already is, an older one brought forward (renumbered) if the template went back to it, else a
        new one. The current revision is the one status names, until the rollout completes."""
        status = sts.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        data = template_patch(sts)
        number = next_revision(revisions)
        equal = [r for r in revisions if r.get("data") == data]
        if equal and revisions[-1].get("data") == data:
            update = revisions[-1]
        elif equal:
            update = await renumber(self.client, equal[-1], number)
        else:
            update, collisions = await create_revision(
                self.client, sts, new_revision(sts, data, number, collisions, HASH_LABEL), collisions, HASH_LABEL)
        current = next((r for r in revisions if meta(r)["name"] == status.get("currentRevision")), update)
        return current, update, collisions

    async def _step(self, sts: Obj, key: str, by_ordinal: dict[int, Obj], current: Obj, update: Obj) -> None:
        """One round of progress: create, replace, remove or update pods in order."""
        spec = sts.get("spec") or {}
        update_rev = meta(update)["name"]
        replicas = int(spec.get("replicas", 1))
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        for ordinal in range(replicas):
            pod = by_ordinal.get(ordinal)
            if pod is not None and (pod.get("status") or {}).get("phase") == "Failed" \
                    and not meta(pod).get("deletionTimestamp"):
                await self._delete(sts, key, pod)  # recreated by a later round
                if ordered:
                    return
                continue
            if pod is None:
                await self._create(sts, key, ordinal, *self._revision_for(sts, ordinal, current, update))
                if ordered:
                    return
                continue
            if ordered and (meta(pod).get("deletionTimestamp") or not running_and_ready(pod)):
                return  # the next ordinal waits for this one
        condemned = sorted((o for o in by_ordinal if o >= replicas), reverse=True)
        await self._delete_scaled_claims(sts, replicas, set(by_ordinal))
        if condemned:
            if ordered and not all(running_and_ready(by_ordinal[o]) for o in range(replicas) if o in by_ordinal):
                return
            for o in condemned:
                pod = by_ordinal[o]
                if not meta(pod).get("deletionTimestamp"):
                    await self._delete(sts, key, pod)
                if ordered:
                    return  # one at a time, highest ordinal first
            return
        await self._rolling_update(sts, key, by_ordinal, update_rev, replicas)

    async def _rolling_update(self, sts: Obj, key: str, by_ordinal: dict[int, Obj], update_rev: str,
                              replicas: int) -> None:
        strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        if not all(o in by_ordinal and running_and_ready(by_ordinal[o]) for o in range(replicas)):
            return  # replace the next pod only once every pod is healthy again
        for ordinal in range(replicas - 1, partition - 1, -1):
            pod = by_ordinal[ordinal]
            if revision_of(pod) != update_rev:
                await self._delete(sts, key, pod)
                return

    @staticmethod
    def _revision_for(sts: Obj, ordinal: int, current: Obj, update: Obj) -> tuple[Obj, str]:
        """(template, revision name) of a new pod: below a rolling update's partition the pods stay at the
        current revision (newVersionedStatefulSetPod); all others get the update revision."""
        strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        chosen = current if strategy.get("type", "RollingUpdate") == "RollingUpdate" and ordinal < partition \
            else update
        template = (apply_revision(sts, chosen).get("spec") or {}).get("template") or {}
        return template, meta(chosen)["name"]

    async def _create(self, sts: Obj, key: str, ordinal: int, template: Obj, revision: str) -> None:
        spec = sts["spec"]
        set_name = meta(sts)["name"]
        name = f"{set_name}-{ordinal}"
        await self._ensure_claims(sts, ordinal)
        pod = pod_from_template(template, sts, name=name)
        labels = pod["metadata"]["labels"]
        labels.update({REVISION_LABEL: revision, POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal)})
        pspec = pod["spec"]
        pspec["hostname"] = name
        if spec.get("serviceName"):
            pspec["subdomain"] = spec["serviceName"]
        claims = {t["metadata"]["name"]: f"{t['metadata']['name']}-{set_name}-{ordinal}"
                  for t in spec.get("volumeClaimTemplates") or []}
        volumes = [v for v in pspec.get("volumes") or [] if v.get("name") not in claims]
        volumes += [{"name": vol, "persistentVolumeClaim": {"claimName": claim_name}}
                    for vol, claim_name in claims.items()]
        if volumes:
            pspec["volumes"] = volumes
        self.expectations.expect_creations(key, 1)
        try:
            await self.client.create(PODS, pod)
        except Exception as e:
            # Refused, never sent, or its answer lost with the connection (an apiserver that died): either way no
            # creation is to be waited for. One that was made after all comes back as AlreadyExists (its name is
            # the ordinal's); waiting instead would stall the set until the expectations expire (5 min).
            self.expectations.creation_observed(key)
            if isinstance(e, ApiError) and is_already_exists(e):
                return  # the cache is behind; the pod's event will bring us back
            if isinstance(e, ApiError):
                self.recorder.warning(sts, "FailedCreate", f"create Pod {name} in StatefulSet {set_name} failed: "
                                      f"{e.message}")
            raise
        self.recorder.normal(sts, "SuccessfulCreate", f"create Pod {name} in StatefulSet {set_name} successful")

    async def _ensure_claims(self, sts: Obj, ordinal: int) -> None:
        set_name, ns = meta(sts)["name"], meta(sts)["namespace"]
        labels = dict(((sts["spec"].get("selector") or {}).get("matchLabels")) or {})
        when_deleted = (sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted", "Retain")
        for tmpl in sts["spec"].get("volumeClaimTemplates") or []:
            name = f"{tmpl['metadata']['name']}-{set_name}-{ordinal}"
            if self.pvc_informer.store.get(f"{ns}/{name}") is not None:
                continue
            pvc: Obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name, "namespace": ns,
                                     "labels": {**labels, **((tmpl.get("metadata") or {}).get("labels") or {})}},
                        "spec": copy.deepcopy(tmpl.get("spec") or {})}
            if when_deleted == "Delete":
                # Owned by the set: the garbage collector removes the claim with it.
                pvc["metadata"]["ownerReferences"] = [owner_reference(sts)]
            try:
                await self.client.create(PVCS, pvc)
            except ApiError as e:
                if not is_already_exists(e):
                    self.recorder.warning(sts, "FailedCreate", f"create Claim {name} for StatefulSet {set_name} "
                                          f"failed: {e.message}")
                    raise

    async def _delete_scaled_claims(self, sts: Obj, replicas: int, live_ordinals: set[int]) -> None:
        """Retention policy whenScaled=Delete: claims of removed ordinals go once their pod is gone."""
        policy = (sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled", "Retain")
        if policy != "Delete":
            return
        set_name, ns = meta(sts)["name"], meta(sts)["namespace"]
        for tmpl in sts["spec"].get("volumeClaimTemplates") or []:
            prefix = f"{tmpl['metadata']['name']}-{set_name}-"
            for pvc in self.pvc_informer.store.by_index("namespace", ns):
                suffix = meta(pvc)["name"][len(prefix):] if meta(pvc)["name"].startswith(prefix) else ""
                if suffix.isdigit() and int(suffix) >= replicas and int(suffix) not in live_ordinals \
                        and not meta(pvc).get("deletionTimestamp"):
                    try:
                        await self.client.delete(PVCS, meta(pvc)["name"], ns)
                    except ApiError as e:
                        if not is_not_found(e):
                            raise

    async def _delete(self, sts: Obj, key: str, pod: Obj) -> None:
        # as for a creation: a deletion that failed in any way (the connection too) is not waited for
        _, error = await delete_pods(self.client, self.expectations, key, [pod])
        if error is not None:
            raise error
        self.recorder.normal(sts, "SuccessfulDelete", f"delete Pod {meta(pod)['name']} in StatefulSet "
                             f"{meta(sts)['name']} successful")

    async def _update_status(self, sts: Obj, pods: list[Obj], current_rev: str, update_rev: str,
                             collisions: int) -> None:
        live = [p for p in pods if not meta(p).get("deletionTimestamp")]
        replicas = int((sts.get("spec") or {}).get("replicas", 1))
        updated = sum(1 for p in live if revision_of(p) == update_rev)
        ready = sum(1 for p in live if is_pod_ready(p))
        if updated == replicas == len(live) and ready == replicas:
            current_rev = update_rev  # the rollout is complete
        status: dict[str, Any] = {
            "observedGeneration": meta(sts).get("generation", 0),
            "replicas": len(live), "readyReplicas": ready, "availableReplicas": ready,
            "currentReplicas": sum(1 for p in live if revision_of(p) == current_rev),
            "updatedReplicas": updated, "currentRevision": current_rev, "updateRevision": update_rev,
            "collisionCount": collisions,
        }
        if status == (sts.get("status") or {}):
            return
        await write_status(self.client, STATEFULSETS, sts, status)
