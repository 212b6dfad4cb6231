"""CustomResourceDefinition (apiextensions.k8s.io/v1) and the kinds it defines.

`CustomResourceDefinitionStrategy` defaults and validates CRDs as Kubernetes' apiextensions does (names,
group, scope, versions with one storage version, structural schemas, subresources, printer columns).
`CustomResourceStrategy` is the strategy of one served version of a custom kind: its schema prunes,
defaults and validates the objects; its status and scale subresources are what the CRD declares.
`rows(crd)` turns an established CRD into its kind-table rows and strategies; the apiserver's CRD
registry (apiserver/crds.py) registers them as CRDs come and go.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from pklib import validation as v
from pklib.api import customresources
from pklib.api.timefmt import now_rfc3339
from pklib.resources import Resource
from pklib.selectors import field_value

from . import crcel, crschema
from .base import KindStrategy
from .fields import Cause, Path, duplicate, forbidden, immutable, invalid, not_supported, required
from .meta import as_dict, as_list, validate_meta

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
SCOPES = ("Cluster", "Namespaced")
COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")


def condition(crd: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in as_list(as_dict(crd.get("status")).get("conditions")):
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return {}


def storage_version(crd: dict[str, Any]) -> str:
    for ver in as_list(as_dict(crd.get("spec")).get("versions")):
        if as_dict(ver).get("storage"):
            return str(ver.get("name"))
    return ""


def _version_schema(ver: dict[str, Any]) -> dict[str, Any]:
    return as_dict(as_dict(ver.get("schema")).get("openAPIV3Schema"))


def _subresources(ver: dict[str, Any]) -> dict[str, Any]:
    return as_dict(ver.get("subresources"))


# -- the CRD kind ------------------------------------------------------------------------------------------

class CustomResourceDefinitionStrategy(KindStrategy):
    kind = "CustomResourceDefinition"
    namespaced = False

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        names = spec.get("names")
        if isinstance(names, dict) and names.get("kind") and not names.get("listKind"):
            names["listKind"] = f"{names['kind']}List"
        conversion = spec.setdefault("conversion", {})
        if isinstance(conversion, dict):
            conversion.setdefault("strategy", "None")

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        meta = obj.setdefault("metadata", {})
        if isinstance(meta, dict):
            finalizers = as_list(meta.get("finalizers"))
            if CLEANUP_FINALIZER not in finalizers:
                meta["finalizers"] = [*finalizers, CLEANUP_FINALIZER]
        stored = storage_version(obj)
        obj["status"] = {"acceptedNames": {"kind": "", "plural": ""}, "conditions": [],
                         "storedVersions": [stored] if stored else []}

    def prepare_for_update(self, obj: dict[str, Any], old: dict[str, Any]) -> None:
        # A new storage version joins status.storedVersions (objects may now be stored at it).
        stored = storage_version(obj)
        status = obj.get("status")
        if stored and isinstance(status, dict) and stored not in as_list(status.get("storedVersions")):
            status["storedVersions"] = [*as_list(status.get("storedVersions")), stored]

    def prepare_for_delete(self, obj: dict[str, Any]) -> None:
        meta = obj.setdefault("metadata", {})
        if CLEANUP_FINALIZER not in as_list(meta.get("finalizers")):
            meta["finalizers"] = [*as_list(meta.get("finalizers")), CLEANUP_FINALIZER]
        status = obj.setdefault("status", {})
        conditions = as_list(status.get("conditions"))
        if any(as_dict(c).get("type") == "Terminating" for c in conditions):
            return  # marked already (a repeated DELETE)
        conditions.append({"type": "Terminating", "status": "True", "reason": "InstanceDeletionPending",
                           "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will "
                                      "begin soon", "lastTransitionTime": now_rfc3339()})
        status["conditions"] = conditions

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        if not isinstance(obj, dict):
            return [invalid("", obj, "must be an object")]
        causes = validate_meta(obj, old, v.is_dns1123_subdomain, False)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return causes + [required(Path("spec"))]
        causes += validate_spec(spec, Path("spec"))
        name = as_dict(obj.get("metadata")).get("name")
        names = as_dict(spec.get("names"))
        if name and names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
            causes.append(invalid(Path("metadata.name"), name, 'must be spec.names.plural+"."+spec.group'))
        if old is not None:
            old_spec = as_dict(old.get("spec"))
            if old_spec.get("group") and spec.get("group") != old_spec.get("group"):
                causes.append(immutable(Path("spec.group"), spec.get("group")))
            stored = set(as_list(as_dict(old.get("status")).get("storedVersions")))
            missing = stored - {as_dict(x).get("name") for x in as_list(spec.get("versions"))}
            for ver in sorted(str(x) for x in missing):
                causes.append(invalid(Path("status.storedVersions"), sorted(str(x) for x in stored),
                                      f"must appear in spec.versions: {ver}"))
        return causes


def validate_spec(spec: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    group = spec.get("group")
    if not group:
        causes.append(required(path.child("group")))
    elif not isinstance(group, str) or v.is_dns1123_subdomain(group):
        causes += [invalid(path.child("group"), group, e) for e in v.is_dns1123_subdomain(str(group))]
    elif "." not in group:
        causes.append(invalid(path.child("group"), group, "should be a domain with at least one dot"))
    scope = spec.get("scope")
    if not scope:
        causes.append(required(path.child("scope")))
    elif scope not in SCOPES:
        causes.append(not_supported(path.child("scope"), scope, SCOPES))
    causes += _validate_names(as_dict(spec.get("names")), path.child("names"))
    causes += _validate_versions(spec.get("versions"), path.child("versions"))
    causes += _validate_conversion(as_dict(spec.get("conversion")), path.child("conversion"))
    if spec.get("preserveUnknownFields") is True:
        causes.append(invalid(path.child("preserveUnknownFields"), True, "must be false in order to use defaults in "
                              "the schema"))
    return causes


def _validate_conversion(conversion: dict[str, Any], path: Path) -> list[Cause]:
    """`None`, or `Webhook` with its client config and review versions. pkube calls no conversion webhook: such a
    CRD is served like `None` (only apiVersion changes), which is exact for the usual single-version CRDs."""
    strategy = conversion.get("strategy")
    if strategy in ("None", None):
        if conversion.get("webhook") is not None:
            return [forbidden(path.child("webhook"), 'should not be set when strategy is not set to Webhook')]
        return []
    if strategy != "Webhook":
        return [not_supported(path.child("strategy"), strategy, ("None", "Webhook"))]
    webhook = conversion.get("webhook")
    if not isinstance(webhook, dict):
        return [required(path.child("webhook"), "required when strategy is set to Webhook")]
    causes: list[Cause] = []
    client = as_dict(webhook.get("clientConfig"))
    if not client.get("url") and not client.get("service"):
        causes.append(required(path.child("webhook.clientConfig"), "exactly one of url or service is required"))
    if not as_list(webhook.get("conversionReviewVersions")):
        causes.append(required(path.child("webhook.conversionReviewVersions"), "must contain at least one version"))
    return causes


def _validate_names(names: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for field in ("plural", "singular"):
        value = names.get(field)
        if not value:
            if field == "plural":
                causes.append(required(path.child(field)))
            continue
        causes += [invalid(path.child(field), value, e) for e in v.is_dns1123_label(str(value))]
    for i, short in enumerate(as_list(names.get("shortNames"))):
        causes += [invalid(path.child("shortNames").index(i), short, e) for e in v.is_dns1123_label(str(short))]
    for i, cat in enumerate(as_list(names.get("categories"))):
        causes += [invalid(path.child("categories").index(i), cat, e) for e in v.is_dns1123_label(str(cat))]
    kind, list_kind = names.get("kind"), names.get("listKind")
    if not kind:
        causes.append(required(path.child("kind")))
    else:
        causes += [invalid(path.child("kind"), kind, e) for e in v.is_dns1035_label(str(kind).lower())]
    if list_kind:
        causes += [invalid(path.child("listKind"), list_kind, e) for e in v.is_dns1035_label(str(list_kind).lower())]
        if list_kind == kind:
            causes.append(invalid(path.child("listKind"), list_kind, "kind and listKind may not be the same"))
    return causes


def _validate_versions(versions: Any, path: Path) -> list[Cause]:
    if not isinstance(versions, list) or not versions:
        return [invalid(path, versions if isinstance(versions, list) else [], "must have exactly one version marked as "
                        "storage version")] if versions is not None else [required(path)]
    causes: list[Cause] = []
    seen: set[str] = set()
    storage = 0
    for i, ver in enumerate(versions):
        p = path.index(i)
        if not isinstance(ver, dict):
            causes.append(invalid(p, ver, "must be an object"))
            continue
        name = ver.get("name")
        if not name:
            causes.append(required(p.child("name")))
        else:
            causes += [invalid(p.child("name"), name, e) for e in v.is_dns1035_label(str(name))]
            if name in seen:
                causes.append(duplicate(p.child("name"), name))
            seen.add(str(name))
        for flag in ("served", "storage"):
            if not isinstance(ver.get(flag), bool):
                causes.append(required(p.child(flag)))
        storage += ver.get("storage") is True
        schema = as_dict(ver.get("schema")).get("openAPIV3Schema")
        if schema is None:
            causes.append(required(p.child("schema.openAPIV3Schema"), "schemas are required"))
        else:
            causes += crschema.structural_errors(schema, p.child("schema.openAPIV3Schema"))
            causes += crcel.rule_errors(schema, p.child("schema.openAPIV3Schema"))
        causes += _validate_subresources(_subresources(ver), p.child("subresources"))
        for j, col in enumerate(as_list(ver.get("additionalPrinterColumns"))):
            causes += _validate_column(as_dict(col), p.child("additionalPrinterColumns").index(j))
        causes += _validate_selectable(as_list(ver.get("selectableFields")), p.child("selectableFields"),
                                       as_dict(schema) if isinstance(schema, dict) else {})
    if storage != 1:
        causes.append(invalid(path, [str(as_dict(x).get("name", "")) for x in versions],
                              "must have exactly one version marked as storage version"))
    if not any(as_dict(x).get("served") for x in versions):
        causes.append(invalid(path, [str(as_dict(x).get("name", "")) for x in versions],
                              "must have at least one version marked as served"))
    return causes


def _validate_subresources(subs: dict[str, Any], path: Path) -> list[Cause]:
    scale = subs.get("scale")
    if scale is None:
        return []
    scale, p = as_dict(scale), path.child("scale")
    causes: list[Cause] = []
    for field, root in (("specReplicasPath", ".spec."), ("statusReplicasPath", ".status.")):
        value = scale.get(field)
        if not value:
            causes.append(required(p.child(field)))
        elif not str(value).startswith(root):
            causes.append(invalid(p.child(field), value, f"should be a json path under {root.rstrip('.')}"))
    selector = scale.get("labelSelectorPath")
    if selector and not (str(selector).startswith(".spec.") or str(selector).startswith(".status.")):
        causes.append(invalid(p.child("labelSelectorPath"), selector, "should be a json path under either .spec or "
                                                                        ".status"))
    return causes


MAX_SELECTABLE = 8


def _validate_selectable(fields: list[Any], path: Path, schema: dict[str, Any]) -> list[Cause]:
    """selectableFields: at most 8, unique, each a JSON path to a string, integer or boolean field of the schema."""
    causes: list[Cause] = []
    if len(fields) > MAX_SELECTABLE:
        causes.append({"type": "FieldValueTooMany", "field": str(path),
                       "message": f"Too many: {len(fields)}: must have at most {MAX_SELECTABLE} items"})
    seen: set[str] = set()
    for i, f in enumerate(fields):
        p = path.index(i).child("jsonPath")
        json_path = as_dict(f).get("jsonPath")
        if not json_path:
            causes.append(required(p))
            continue
        if json_path in seen:
            causes.append(duplicate(p, json_path))
        seen.add(str(json_path))
        node: Any = schema
        for part in str(json_path).lstrip(".").split("."):
            node = as_dict(as_dict(node).get("properties")).get(part)
        if node is None:
            causes.append(invalid(p, json_path, "is an invalid path: does not refer to a valid field"))
        elif as_dict(node).get("type") not in ("string", "integer", "boolean"):
            causes.append(invalid(p, json_path, "must point to a field of type string, boolean or integer"))
    return causes


def _validate_column(col: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    if not col.get("name"):
        causes.append(required(path.child("name")))
    if not col.get("type"):
        causes.append(required(path.child("type")))
    elif col["type"] not in COLUMN_TYPES:
        causes.append(not_supported(path.child("type"), col["type"], COLUMN_TYPES))
    if not col.get("jsonPath"):
        causes.append(required(path.child("jsonPath")))
    elif not str(col["jsonPath"]).startswith("."):
        causes.append(invalid(path.child("jsonPath"), col["jsonPath"], "must be a simple json path starting with ."))
    return causes


# -- the custom kinds --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scale:
    spec_replicas: str  # JSON paths as the CRD writes them: ".spec.replicas"
    status_replicas: str
    selector: str


def json_path_get(obj: Any, path: str) -> Any:
    """The value at a simple JSON path (`.spec.replicas`, `.status.conditions[0].type`), None when absent."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            i = int(part[1:-1])
            obj = obj[i] if isinstance(obj, list) and i < len(obj) else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


def json_path_set(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = [p for p in path.split(".") if p]
    for part in parts[:-1]:
        nxt = obj.get(part)
        if not isinstance(nxt, dict):
            nxt = obj[part] = {}
        obj = nxt
    obj[parts[-1]] = value


class CustomResourceStrategy(KindStrategy):
    def __init__(self, crd: dict[str, Any], version: dict[str, Any]):
        spec = crd["spec"]
        self.kind = spec["names"]["kind"]
        self.namespaced = spec["scope"] == "Namespaced"
        self.group = spec["group"]
        self.storage_version = f"{self.group}/{storage_version(crd)}"
        self.schema = _version_schema(version)
        self._validator: crschema.Validator | None = None
        self._openapi: dict[str, Any] | None = None
        self.columns = [as_dict(c) for c in as_list(version.get("additionalPrinterColumns"))]
        subs = _subresources(version)
        scale = subs.get("scale")
        self.status_in_generation = "status" not in subs
        self.scale = Scale(scale["specReplicasPath"], scale["statusReplicasPath"],
                           scale.get("labelSelectorPath") or "") if isinstance(scale, dict) else None
        self.terminating = bool(as_dict(crd.get("metadata")).get("deletionTimestamp"))
        # selectableFields: field selectors on the CRD's own fields (`spec.color=red`).
        self.field_labels = tuple(str(as_dict(f).get("jsonPath", "")).lstrip(".")
                                  for f in as_list(version.get("selectableFields")))

    def openapi_schema(self) -> dict[str, Any] | None:
        """The version's schema with the object's standard fields (a private copy)."""
        if self._openapi is None:
            self._openapi = self._with_standard_fields()
        return copy.deepcopy(self._openapi)

    def _with_standard_fields(self) -> dict[str, Any]:
        out = copy.deepcopy(self.schema)
        props = out.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema of this "
                                                                 "representation of an object."}
        props["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource "
                                                          "this object represents."}
        props["metadata"] = {"type": "object", "description": "Standard object's metadata."}
        return out

    def default(self, obj: dict[str, Any]) -> None:
        if isinstance(obj, dict):
            crschema.prune(obj, self.schema)
            crschema.apply_defaults(obj, self.schema)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        if not isinstance(obj, dict):
            return [invalid("", obj, "must be an object")]
        causes = validate_meta(obj, old, self.name_errors, self.namespaced)
        if self._validator is None:
            self._validator = crschema.validator(self.schema)
        causes += self._validator.causes(obj) or crschema.list_errors(self.schema, obj)
        if not causes:  # rules may trust the types the schema checked, as in Kubernetes
            causes += crcel.check(self.schema, obj, old if old is not None else crcel.MISSING)
        field = self.scale.spec_replicas.lstrip(".") if self.scale is not None else ""
        if self.scale is not None and not any(c["field"] == field for c in causes):
            replicas = json_path_get(obj, self.scale.spec_replicas)
            if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool)
                                         or replicas < 0):
                causes.append(invalid(Path(field), replicas,
                                      "should be a non-negative integer"))
        return causes

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        if status_subresource:
            obj.pop("status", None)  # the status subresource writes status; a create's is dropped

    def field_value(self, obj: dict[str, Any], path: str) -> str:
        if path not in self.field_labels:
            return field_value(obj, path)
        value = json_path_get(obj, "." + path)
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    # The scale subresource at the CRD's paths.
    def scale_of(self, obj: dict[str, Any]) -> tuple[int, int, str]:
        if self.scale is None:
            return super().scale_of(obj)
        spec = json_path_get(obj, self.scale.spec_replicas)
        status = json_path_get(obj, self.scale.status_replicas)
        selector = json_path_get(obj, self.scale.selector) if self.scale.selector else ""
        return (spec if isinstance(spec, int) else 0, status if isinstance(status, int) else 0,
                selector if isinstance(selector, str) else "")

    def set_replicas(self, obj: dict[str, Any], replicas: int) -> None:
        if self.scale is None:
            return super().set_replicas(obj, replicas)
        json_path_set(obj, self.scale.spec_replicas, replicas)


def rows(crd: dict[str, Any]) -> list[tuple[Resource, CustomResourceStrategy]]:
    """The kind-table rows and strategies of an established CRD's served versions, preferred version first."""
    return [(customresources.row(crd, ver), CustomResourceStrategy(crd, ver))
            for ver in customresources.served_versions(crd)]
