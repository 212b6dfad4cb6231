"""The KindStrategy interface (see docs/DEVELOPING.md "Kind behaviour") and its common part.

Every kind validates in two steps: its JSON Schema (structure, types, required fields),
then — only when the structure is sound, so that rules can trust types — the metadata
rules and the kind's own semantic rules.

Everything else in which kinds differ for the generic store (initial status, what an update may
change, create-on-update, graceful deletion, when a deleting object is gone, field selectors) is a
hook here too, named after Kubernetes' strategy methods: the handlers name no kind.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from pklib import validation as v
from pklib.selectors import SelectorError, field_value, selector_from_match

from . import schema
from .fields import Cause, invalid
from .meta import as_dict, validate_meta

Rollback = Callable[[], Awaitable[None]]


async def nothing() -> None:
    return None


def drop_nulls(value: Any) -> None:
    """Remove null-valued fields everywhere, as Kubernetes' decode + encode does (an explicit
    `"namespace": null` means "unset"), so that defaults and rules see one form of "absent"."""
    if isinstance(value, dict):
        for key in [k for k, item in value.items() if item is None]:
            del value[key]
        for item in value.values():
            drop_nulls(item)
    elif isinstance(value, list):
        for item in value:
            drop_nulls(item)


class KindStrategy:
    kind = ""  # "" = no schema (kinds without a module of their own)
    namespaced = True
    # Status fields Kubernetes always serializes (Go fields without `omitempty`, `required` in its OpenAPI), with
    # their zero values: every stored status carries them, so strict clients can decode the first answer on.
    status_zero: dict[str, Any] = {}
    # Seconds after its last write at which the store deletes an object by itself (0 = never): Kubernetes'
    # TTLFunc, which only Events have (--event-ttl).
    ttl_seconds = 0
    # The apiVersion objects are stored at when it is not the served one's (custom resources' storage version).
    storage_version = ""
    terminating = False  # the kind's definition is being deleted: no new objects (custom resources)
    status_in_generation = False  # a status change bumps metadata.generation (custom kinds without /status)

    def name_errors(self, name: str) -> list[str]:
        """What is wrong with a name for this kind (most kinds: a DNS-1123 subdomain)."""
        return v.is_dns1123_subdomain(name)

    def default(self, obj: dict[str, Any]) -> None:
        """Normalise nulls away, then fill in the kind's defaults (in place)."""
        if isinstance(obj, dict):
            drop_nulls(obj)
            self.apply_defaults(obj)
            status = obj.setdefault("status", {}) if self.status_zero else None
            if isinstance(status, dict):
                for field, zero in self.status_zero.items():
                    status.setdefault(field, zero)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        return None

    def convert(self, obj: dict[str, Any], api_version: str) -> None:
        """Turn `obj` (in place) into `api_version` of the kind: between a served version and the storage
        version. Without a conversion of its own (custom resources: Kubernetes' `None` strategy) only apiVersion
        changes."""
        obj["apiVersion"] = api_version

    def openapi_schema(self) -> dict[str, Any] | None:
        """The kind's OpenAPI v3 schema when it comes from elsewhere than kinds/schemas (custom resources)."""
        return None

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        if not isinstance(obj, dict):
            return [invalid("", obj, "must be an object")]
        spec_unchanged = old is not None and "spec" in obj and obj["spec"] == old.get("spec")
        causes = schema.check(self.kind, obj, spec_unchanged) if self.kind else []
        if causes:
            return causes
        causes = validate_meta(obj, old, self.name_errors, self.namespaced)
        return causes + self.validate_object(obj, old)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        """The kind's semantic rules; the schema has accepted `obj` (and `old`, when stored)."""
        return []

    # -- the generic store's hooks (Kubernetes' RESTCreateStrategy, RESTUpdateStrategy, RESTDeleteStrategy) --

    # Field selectors this kind supports beyond metadata.name and metadata.namespace (Kubernetes' GetAttrs).
    field_labels: tuple[str, ...] = ()
    # Whether a PUT of a missing object creates it (Kubernetes' AllowCreateOnUpdate).
    allow_create_on_update = False

    def field_value(self, obj: dict[str, Any], path: str) -> str:
        """The value of field label `path` of `obj` for field selectors ("" when unset)."""
        return field_value(obj, path)

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        """Before defaulting on create: status is the system's to write, so a kind with a status
        subresource starts from its initial status whatever the client sent."""
        if status_subresource:
            obj["status"] = {}

    def prepare_for_update(self, obj: dict[str, Any], old: dict[str, Any]) -> None:
        """Before defaulting on an update of the main resource (status already kept from `old`):
        put back what only other paths may change."""
        return None

    def delete_refusal(self, obj: dict[str, Any]) -> str | None:
        """Why `obj` may not be deleted at all (answered 403 Forbidden, as Kubernetes' admission does), or None."""
        return None

    def check_graceful_delete(self, obj: dict[str, Any], requested: int | None) -> int | None:
        """The grace period in seconds to delete `obj` with, given the one the client asked for;
        None when the kind has no graceful deletion (its objects go once their finalizers are gone)."""
        return None

    def prepare_for_delete(self, obj: dict[str, Any]) -> None:
        """Changes to an object that a DELETE marks (deletionTimestamp) rather than removes."""
        return None

    def finished_deleting(self, obj: dict[str, Any]) -> bool:
        """Whether a deleting object can be removed from storage now: its finalizers are all gone."""
        meta = as_dict(obj.get("metadata"))
        return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")

    def admit(self, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Before validation, on create (old None) and update, dry run or not: refuse a write the writer may not
        make (a StatusError), e.g. RBAC's escalation prevention. The writer is authz.authorizer.CURRENT."""
        return None

    # -- allocations around the write (Kubernetes' BeginCreate / BeginUpdate / AfterDelete) --

    async def begin_create(self, obj: dict[str, Any], storage: Any) -> Rollback:
        """After validation, before the write: allocate what the object needs; the returned rollback
        gives it back if the write fails."""
        return nothing

    async def begin_update(self, obj: dict[str, Any], old: dict[str, Any], storage: Any) -> Rollback:
        return nothing

    async def after_delete(self, obj: dict[str, Any], storage: Any) -> None:
        return None

    # -- the scale subresource (Deployments, ReplicaSets, StatefulSets; custom resources at their CRD's paths) --

    def scale_of(self, obj: dict[str, Any]) -> tuple[int, int, str]:
        """(spec replicas, status replicas, label selector as a string) of `obj`."""
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        try:
            selector = str(selector_from_match(spec.get("selector")))
        except SelectorError:
            selector = ""
        return int(spec.get("replicas", 1)), int(status.get("replicas") or 0), selector

    def set_replicas(self, obj: dict[str, Any], replicas: int) -> None:
        obj.setdefault("spec", {})["replicas"] = replicas
