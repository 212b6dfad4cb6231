"""Generic object semantics over storage: create, get, update, patch (no HTTP here).

What every kind shares lives here, as in Kubernetes' generic registry store:
uid, creationTimestamp, generation, resourceVersion (the etcd mod revision,
never stored in the value), the split between the main resource and its status
subresource, and finishing the deletion of an object whose last finalizer is
removed. What differs between kinds (initial status, what an update may change,
create-on-update, when a deleting object is gone, defaulting, validation and
allocations) comes from the kind's strategy, `apiserver.kinds.strategy_for`: no
kind is named here.
"""
from __future__ import annotations

import copy
import random
import uuid
from typing import Any, Awaitable, Callable

import orjson

from pklib import patch as patching
from pklib.api.timefmt import now_rfc3339
from pklib.resources import LIMITRANGES, RESOURCEQUOTAS, SERVICEACCOUNTS, Resource

from . import kinds
from .admission import limitranger, podsecurity, serviceaccount
from .admission.resourcequota import QuotaAdmission
from .bodies import member
from .status import StatusError, already_exists, bad_request, conflict, forbidden, invalid, not_found
from .storage.interface import Entry, KeyExistsError, KeyNotFoundError, RevisionConflictError, Storage
from .watchcache import WatchCache, resource_prefix, with_rv

MAX_RETRIES = 16  # internal retries of unconditional updates and patches on write conflicts
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet (no vowels)
# Metadata that only the server sets: what a client sends for these is ignored.
_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                "resourceVersion", "selfLink", "managedFields")
NAMESPACES_PREFIX = resource_prefix("", "namespaces")
PODS_PREFIX = resource_prefix("", "pods")
LIMITRANGES_PREFIX = resource_prefix(LIMITRANGES.group, LIMITRANGES.plural)
# Writes of these make admission wait for the cache to show them (read-your-writes for the policy objects).
_POLICY_PREFIXES = (LIMITRANGES_PREFIX, resource_prefix(RESOURCEQUOTAS.group, RESOURCEQUOTAS.plural))
NAMESPACE_CACHE_WAIT = 1.0  # bound on waiting for the cache to show this server's own writes


def object_key(res: Resource, namespace: str | None, name: str) -> str:
    base = resource_prefix(res.group, res.plural)
    return f"{base}{namespace}/{name}" if res.namespaced else f"{base}{name}"


def collection_prefix(res: Resource, namespace: str | None) -> str:
    base = resource_prefix(res.group, res.plural)
    return f"{base}{namespace}/" if res.namespaced and namespace else base


def _spec_part(obj: dict[str, Any], with_status: bool = False) -> dict[str, Any]:
    """Everything that counts as desired state for `generation` (all but metadata and status; custom resources
    without a status subresource count their status too, as in Kubernetes)."""
    skip = ("metadata", "apiVersion", "kind") if with_status else ("metadata", "status", "apiVersion", "kind")
    return {k: v for k, v in obj.items() if k not in skip}


def clone_stored(stored: Any) -> Any:
    """A private deep copy of a stored object (plain JSON): orjson round trip, several times faster than deepcopy."""
    return orjson.loads(orjson.dumps(stored))


class _NotCurrent(Exception):
    """A write read its object from the watch cache and must re-read it from etcd before deciding (no-op, dry run)."""


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj, metadata=dict(obj.get("metadata") or {}))
    out["metadata"].pop("resourceVersion", None)
    return out


def converts(res: Resource) -> bool:
    """Whether objects of `res` are stored at another version than the served one (custom resources)."""
    stored = kinds.strategy_for(res).storage_version
    return bool(stored) and stored != res.api_version


def served(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """A stored object as the served version shows it, changed in place (the strategy's `convert`: custom
    resources have no conversion webhook, Kubernetes' `None` strategy, so only apiVersion changes; autoscaling/v1
    HorizontalPodAutoscalers are converted from the stored v2)."""
    if isinstance(obj, dict) and obj.get("kind") == res.kind and obj.get("apiVersion") != res.api_version:
        kinds.strategy_for(res).convert(obj, res.api_version)
    return obj


def to_storage(res: Resource, obj: dict[str, Any]) -> None:
    """A written object (in the served version) in the storage version, changed in place."""
    strategy = kinds.strategy_for(res)
    if strategy.storage_version and strategy.storage_version != res.api_version:
        strategy.convert(obj, strategy.storage_version)


def served_line(res: Resource, line: bytes) -> bytes:
    """A watch event line (`{"type":..,"object":..}`) with its object as the served version shows it."""
    event = orjson.loads(line)
    if isinstance(event.get("object"), dict):
        served(res, event["object"])
    return orjson.dumps(event) + b"\n"


def apply_patch(patch_type: str, obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    """obj with a merge / json / strategic patch applied (422 if the patch does not apply)."""
    appliers = {"merge": patching.merge_patch, "json": patching.json_patch,
                "strategic": patching.strategic_merge_patch}
    try:
        patched = appliers[patch_type](obj, patch)
    except patching.PatchTooLargeError as e:
        raise StatusError(413, "RequestEntityTooLarge", f"Request entity too large: {e}") from None
    except patching.PatchError as e:
        raise StatusError(422, "Invalid", f"the patch could not be applied: {e}") from None
    if not isinstance(patched, dict):
        raise bad_request("the patched document is not an object")
    return patched


class Objects:
    def __init__(self, storage: Storage, cache: WatchCache):
        self.storage = storage
        self.cache = cache
        # The newest revision of a namespace write through this server: the cache must show it before
        # namespace checks may trust the cache (read-your-writes).
        self.namespace_written = 0
        self.pod_security = podsecurity.PodSecurity()  # replaced by the app with the configured default
        self.mount_service_account_tokens = False  # the app turns it on when it can issue tokens
        self.policy_written = 0  # the newest LimitRange/ResourceQuota write through this server
        self.quota = QuotaAdmission(storage, cache)

    def wrote(self, key: str, revision: int) -> int:
        """Notes a write of `key` at `revision` (returned), for the namespace check's read-your-writes."""
        if key.startswith(NAMESPACES_PREFIX):
            self.namespace_written = max(self.namespace_written, revision)
        elif key.startswith(_POLICY_PREFIXES):
            self.policy_written = max(self.policy_written, revision)
        return revision

    # -- reads -------------------------------------------------------------------------------

    async def read(self, res: Resource, namespace: str | None, name: str) -> Entry:
        entry = await self.storage.get(object_key(res, namespace, name))
        if entry is None:
            raise not_found(res.plural, name, res.group)
        return entry

    async def read_for_write(self, res: Resource, namespace: str | None, name: str, fresh: bool
                             ) -> tuple[Entry | None, bool]:
        """(entry, whether it is known current) for a read-modify-write, with a private copy of the value.

        Like Kubernetes' GuaranteedUpdate, the first attempt starts from the watch cache (saving an etcd
        round trip per write); the write's revision check catches a stale copy, and the caller then
        retries with `fresh` (read from etcd)."""
        key = object_key(res, namespace, name)
        if not fresh and self.cache.ready:
            cached = self.cache.for_prefix(resource_prefix(res.group, res.plural)).objects.get(key)
            if cached is not None:
                value = orjson.loads(cached.raw)  # a private deep copy, parsed from the cached JSON
                value["metadata"].pop("resourceVersion", None)
                return Entry(key, value, cached.revision), False
        return await self.storage.get(key), True

    async def lookup(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object from the watch cache, else from etcd (not cached yet), None if neither has it. Only to
        read: the cached object is shared."""
        key = object_key(res, namespace, name)
        cached = self.cache.for_prefix(resource_prefix(res.group, res.plural)).objects.get(key)
        if cached is not None:
            return cached.obj
        entry = await self.storage.get(key)
        return entry.value if entry is not None else None

    async def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        entry = await self.read(res, namespace, name)
        return with_rv(entry.value, entry.mod_revision)

    # -- checks ------------------------------------------------------------------------------

    @staticmethod
    def check_identity(res: Resource, body: dict[str, Any], namespace: str | None) -> None:
        """The body must be of the URL's kind, in the URL's namespace (400 otherwise)."""
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if kind and kind != res.kind or api_version and api_version != res.api_version:
            raise bad_request(f"the API version in the data ({api_version or ''}) and the kind ({kind or ''}) do not "
                              f"match the request's resource {res.api_version} {res.kind}")
        meta = body.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        body_ns = (meta or {}).get("namespace")
        if res.namespaced and body_ns and namespace and body_ns != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                              "request")

    async def namespace_object(self, namespace: str) -> dict[str, Any] | None:
        """The Namespace `namespace` (None if there is none), as admission sees it.

        Like Kubernetes, this reads the cache; it first waits until the cache holds every namespace
        write this server made, so a namespace created or deleted through it a moment ago counts. Not found in
        the cache still gets a look in the store (created through another API server)."""
        await self.cache.wait_for_revision(self.namespace_written, NAMESPACE_CACHE_WAIT)
        cached = self.cache.for_prefix(NAMESPACES_PREFIX).objects.get(NAMESPACES_PREFIX + namespace)
        if cached is not None:
            return cached.obj
        entry = await self.storage.get(NAMESPACES_PREFIX + namespace)
        return entry.value if entry is not None else None

    async def check_namespace(self, namespace: str) -> dict[str, Any]:
        """The namespace to create in: 404 for a missing one, 403 for a terminating one (Kubernetes'
        NamespaceLifecycle admission)."""
        ns = await self.namespace_object(namespace)
        if ns is None:
            raise not_found("namespaces", namespace)
        if (ns.get("metadata") or {}).get("deletionTimestamp"):
            raise forbidden(f"unable to create new content in namespace {namespace} because it is being terminated")
        return ns

    async def limit_ranges(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's LimitRanges, from the cache once it shows this server's own policy writes."""
        await self.cache.wait_for_revision(self.policy_written, NAMESPACE_CACHE_WAIT)
        prefix = f"{LIMITRANGES_PREFIX}{namespace}/"
        return [c.obj for c in self.cache.for_prefix(LIMITRANGES_PREFIX).items(prefix, None)]

    async def mutate(self, res: Resource, obj: dict[str, Any], namespace: str) -> None:
        """Mutating admission of a create, before validation: the ServiceAccount plugin for Pods, LimitRanger's
        defaults."""
        if res.kind == "Pod" and res.group == "" and self.mount_service_account_tokens:
            async def service_account(name: str) -> dict[str, Any] | None:
                return await self.lookup(SERVICEACCOUNTS, namespace, name)
            await serviceaccount.admit_pod(obj, service_account)
        if limitranger.governs(res):
            limitranger.default(res, obj, await self.limit_ranges(namespace))

    async def admit(self, res: Resource, obj: dict[str, Any], old: dict[str, Any] | None,
                    namespace: dict[str, Any] | None = None) -> None:
        """Admission of a create (old None) or update that validation accepted: Pod Security, LimitRanger."""
        if res.kind == "Namespace":
            causes = self.pod_security.label_errors(obj, old)
            if causes:
                raise invalid(res.kind, (obj.get("metadata") or {}).get("name") or "", causes)
            if old is not None:
                in_ns = f"{PODS_PREFIX}{obj['metadata']['name']}/"
                self.pod_security.namespace_updated(
                    obj, old, lambda: [c.obj for c in self.cache.for_prefix(PODS_PREFIX).items(in_ns, None)])
        elif res.namespaced and podsecurity.governs(res.kind):
            ns_name = (obj.get("metadata") or {}).get("namespace") or ""
            self.pod_security.admit(res.kind, obj, old, namespace or await self.namespace_object(ns_name))
        if limitranger.governs(res):
            limitranger.check(res, obj, old, await self.limit_ranges((obj.get("metadata") or {}).get("namespace")
                                                                     or ""))

    @staticmethod
    def validate(res: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        Objects.refuse_invalid(res, obj, kinds.strategy_for(res).validate(obj, old))

    @staticmethod
    def refuse_invalid(res: Resource, obj: dict[str, Any], causes: list[dict[str, Any]]) -> None:
        """422 Invalid naming each of the validation `causes` (if any) found in `obj`."""
        if causes:
            status_causes = [{"reason": c.get("type") or c.get("reason") or "FieldValueInvalid",
                              "message": c.get("message", ""), "field": c.get("field", "")} for c in causes]
            raise invalid(res.kind, (obj.get("metadata") or {}).get("name") or "", status_causes, res.group,
                          qualify=res.custom)

    # -- create ------------------------------------------------------------------------------

    async def create(self, res: Resource, namespace: str | None, body: dict[str, Any], *,
                     dry_run: bool = False, managed_fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Creates `body`, which the caller hands over: it is filled in (defaults) rather than copied.

        `managed_fields` is what server-side apply records as the object's field ownership."""
        self.check_identity(res, body, namespace)
        strategy = kinds.strategy_for(res)
        if strategy.terminating:
            raise StatusError(405, "MethodNotAllowed", "create not allowed while custom resource definition "
                                                       "is terminating")
        obj = body
        to_storage(res, obj)
        obj["apiVersion"], obj["kind"] = strategy.storage_version or res.api_version, res.kind
        meta = obj["metadata"] = dict(obj.get("metadata") or {})
        for k in _SERVER_META:
            meta.pop(k, None)
        if managed_fields:
            meta["managedFields"] = managed_fields
        if res.namespaced:
            if not namespace:
                raise bad_request(f"{res.kind} is namespaced: create it under /namespaces/<namespace>/")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)  # cluster-scoped: Kubernetes clears it rather than failing
        if not meta.get("name"):
            if meta.get("generateName") and not isinstance(meta["generateName"], str):
                raise invalid(res.kind, "", [{"reason": "FieldValueInvalid", "field": "metadata.generateName",
                                              "message": "Invalid value: must be a string"}], res.group)
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choices(_GENERATE_CHARS, k=5))
            else:
                raise invalid(res.kind, "", [{"reason": "FieldValueRequired", "field": "metadata.name",
                                              "message": "Required value: name or generateName is required"}],
                              res.group)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        strategy.prepare_for_create(obj, "status" in res.subresources)
        strategy.default(obj)
        strategy.admit(obj, None)
        await self.mutate(res, obj, namespace or "")
        self.validate(res, obj, None)
        ns = await self.check_namespace(namespace or "") if res.namespaced else None
        await self.admit(res, obj, None, ns)
        key = object_key(res, namespace, meta["name"])
        if res.namespaced:  # ResourceQuota last, as in Kubernetes: it charges what the others admitted
            await self.cache.wait_for_revision(self.policy_written, NAMESPACE_CACHE_WAIT)
            await self.quota.charge(res, obj, dry_run)
        if dry_run:  # everything a create checks, nothing it writes (no resourceVersion, like Kubernetes)
            if await self.storage.get(key) is not None:
                raise already_exists(res.plural, meta["name"], res.group)
            return obj
        rollback = await strategy.begin_create(obj, self.storage)
        try:
            revision = self.wrote(key, await self.storage.create(key, obj, strategy.ttl_seconds))
        except KeyExistsError:
            await rollback()
            raise already_exists(res.plural, meta["name"], res.group) from None
        except BaseException:
            await rollback()
            raise
        return with_rv(obj, revision)

    # -- update ------------------------------------------------------------------------------

    def merge_for_update(self, res: Resource, old: dict[str, Any], body: dict[str, Any],
                         subresource: str | None, *, owned: bool = False) -> dict[str, Any]:
        """The object to store for a PUT of `body` over `old` (a stored object) on the main resource or a
        subresource. `owned`: the caller hands `body` over (a freshly patched copy), so it is not copied."""
        old_meta = old.get("metadata") or {}
        if kinds.strategy_for(res).storage_version not in ("", res.api_version):
            body = body if owned else copy.deepcopy(body)
            owned = True
            to_storage(res, body)
        if subresource in ("status", "finalize", "approval"):
            # Status updates change status only (finalize: spec.finalizers only; approval: status.conditions
            # only, CertificateSigningRequests'); metadata stays.
            if subresource == "status":  # old's status is replaced: no need to copy it
                new = clone_stored({k: v for k, v in old.items() if k != "status"})
                status = member(body, "status")
                new["status"] = status if owned else copy.deepcopy(status)
                return new
            new = clone_stored(old)
            if subresource == "approval":
                conditions = member(body, "status").get("conditions")
                new.setdefault("status", {})["conditions"] = conditions if owned else copy.deepcopy(conditions)
            else:
                new.setdefault("spec", {})["finalizers"] = list(member(body, "spec").get("finalizers") or [])
            return new
        if subresource == "ephemeralcontainers":
            # pods/ephemeralcontainers: spec.ephemeralContainers only (PodStrategy allows additions only)
            new = clone_stored(old)
            ephemeral = member(body, "spec").get("ephemeralContainers")
            new.setdefault("spec", {})["ephemeralContainers"] = ephemeral if owned else copy.deepcopy(ephemeral)
            if not ephemeral:
                new["spec"].pop("ephemeralContainers")
            return new
        new = body if owned else copy.deepcopy(body)
        new["apiVersion"], new["kind"] = kinds.strategy_for(res).storage_version or res.api_version, res.kind
        meta = new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace",
                  "generateName"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        meta.pop("resourceVersion", None)
        # Field ownership is server-side apply's to change; other writes keep what it recorded.
        if "managedFields" in old_meta:
            meta["managedFields"] = clone_stored(old_meta["managedFields"])
        else:
            meta.pop("managedFields", None)
        if "status" in res.subresources:
            if "status" in old:
                new["status"] = clone_stored(old["status"])
            else:
                new.pop("status", None)
        kinds.strategy_for(res).prepare_for_update(new, old)
        return new

    async def write_update(self, res: Resource, entry: Entry, new: dict[str, Any], dry_run: bool = False,
                           current: bool = True, checks: bool = True) -> dict[str, Any]:
        """Stores `new` over `entry` if the store still holds entry's revision (RevisionConflictError otherwise).

        `current=False`: entry came from the watch cache and may be stale; what is decided without a write
        (a no-op, a dry run) raises _NotCurrent instead, so that the caller re-reads from etcd.
        `checks=False`: a write the server itself makes of a stored object without the kind's defaulting,
        validation and admission (Kubernetes' pods/binding writes the pod through the storage that way)."""
        old = entry.value
        meta = new.setdefault("metadata", {})
        old_meta = old.get("metadata") or {}
        meta.pop("resourceVersion", None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(res.kind, meta.get("name", ""), [{
                    "reason": "FieldValueForbidden", "field": "metadata.finalizers",
                    "message": "Forbidden: no new finalizers can be added if the object is being deleted, found new "
                               f"finalizers {sorted(added)}"}], res.group)
        strategy = kinds.strategy_for(res)
        if checks:
            strategy.default(new)
        # After defaulting (Kubernetes defaults as it decodes): a field the defaults put back changes nothing.
        meta["generation"] = old_meta.get("generation", 1)
        if _spec_part(new, strategy.status_in_generation) != _spec_part(old, strategy.status_in_generation):
            meta["generation"] = meta["generation"] + 1
        if checks:
            strategy.admit(new, old)
            # Validation only reads the old object: a copy of its top level (for the resourceVersion) will do.
            self.validate(res, new, with_rv(dict(old, metadata=dict(old_meta)), entry.mod_revision))
            await self.admit(res, new, old)
            if res.namespaced:  # what the update adds (a claim asking for more storage...), checked and charged
                await self.quota.charge(res, new, dry_run, old)
        if new == _without_rv(old) or dry_run:
            if not current:
                raise _NotCurrent()
            return with_rv(new, entry.mod_revision)  # a no-op update writes nothing, like Kubernetes
        if strategy.finished_deleting(new):
            deleted = await self.storage.delete(entry.key, entry.mod_revision)
            self.wrote(entry.key, deleted.mod_revision)
            await strategy.after_delete(deleted.value, self.storage)
            return with_rv(new, deleted.mod_revision)
        rollback = await strategy.begin_update(new, old, self.storage)  # old: entry's own copy, only read
        try:
            revision = self.wrote(entry.key, await self.storage.update(entry.key, new, entry.mod_revision,
                                                                      strategy.ttl_seconds))
        except BaseException:
            await rollback()
            raise
        return with_rv(new, revision)

    async def update(self, res: Resource, namespace: str | None, name: str, body: dict[str, Any],
                     subresource: str | None = None, *, dry_run: bool = False) -> dict[str, Any]:
        self.check_identity(res, body, namespace)
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        wanted = str(meta.get("resourceVersion") or "")

        def mutate(entry: Entry) -> dict[str, Any]:
            # a precondition that fails on a retry (someone else wrote since) is the client's conflict
            if wanted and wanted != str(entry.mod_revision):
                raise conflict(res.plural, name, res.group)
            return self.merge_for_update(res, entry.value, body, subresource)

        async def create() -> dict[str, Any]:
            return await self.create(res, namespace, dict(body, metadata=dict(meta, name=name)), dry_run=dry_run)

        create_missing = kinds.strategy_for(res).allow_create_on_update and subresource is None and not wanted
        return await self.guaranteed_update(res, namespace, name, mutate, dry_run,
                                            if_missing=create if create_missing else None)

    async def guaranteed_update(self, res: Resource, namespace: str | None, name: str,
                                mutate: Callable[[Entry], dict[str, Any]], dry_run: bool = False,
                                fresh: bool = False,
                                if_missing: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                                checks: bool = True) -> dict[str, Any]:
        """Read, mutate, write at the read revision; on a write conflict re-read and mutate again.

        `mutate` returns the full new object (it may raise StatusError to refuse); entry.value is the
        caller's own copy, but `write_update` compares against it, so the new object must not share it.
        `fresh`: start from etcd rather than the watch cache (the caller expects the object just changed).
        `if_missing`: what to do when there is no object (create it: a kind that allows create-on-update).
        `checks`: see write_update."""
        fresh = fresh or dry_run
        for _ in range(MAX_RETRIES):
            entry, current = await self.read_for_write(res, namespace, name, fresh)
            fresh = True  # any retry reads from etcd
            if entry is None:
                if if_missing is not None:
                    return await if_missing()
                raise not_found(res.plural, name, res.group)
            try:
                return await self.write_update(res, entry, mutate(entry), dry_run, current, checks)
            # Whatever was decided on a cached copy (which may be stale) is decided again on etcd's.
            except RevisionConflictError:
                continue
            except KeyNotFoundError:
                if current:
                    raise not_found(res.plural, name, res.group) from None
            except (StatusError, _NotCurrent):
                if current:
                    raise
        raise conflict(res.plural, name, res.group, "too many concurrent writers; try again")

    async def patch(self, res: Resource, namespace: str | None, name: str, patch_type: str, patch: Any,
                    subresource: str | None = None, *, dry_run: bool = False) -> dict[str, Any]:
        def mutate(entry: Entry) -> dict[str, Any]:
            # The patch functions copy what they patch: only the metadata gets the resourceVersion here.
            value = entry.value
            if subresource == "status" and patch_type != "json" and not converts(res):
                # Only the patched status is kept: the spec need not be copied into the patched document (a JSON
                # patch may `test` it; a conversion may read it).
                value = {k: v for k, v in value.items() if k != "spec"}
            current = served(res, with_rv(dict(value, metadata=dict(value.get("metadata") or {})),
                                          entry.mod_revision))
            patched = apply_patch(patch_type, current, patch)
            self.check_identity(res, patched, namespace)
            wanted = str((patched.get("metadata") or {}).get("resourceVersion") or "")
            if wanted and wanted != str(entry.mod_revision):
                raise conflict(res.plural, name, res.group)
            if (patched.get("metadata") or {}).get("name") != name:
                raise bad_request("metadata.name cannot be changed by a patch")
            return self.merge_for_update(res, entry.value, patched, subresource, owned=True)

        return await self.guaranteed_update(res, namespace, name, mutate, dry_run)

    async def ensure(self, res: Resource, body: dict[str, Any]) -> None:
        """Creates an object if it does not exist yet (startup namespaces; a namespaced one in its
        metadata.namespace)."""
        try:
            await self.create(res, (body.get("metadata") or {}).get("namespace") if res.namespaced else None, body)
        except StatusError as e:
            if e.code != 409:
                raise
