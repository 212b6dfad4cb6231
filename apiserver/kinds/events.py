"""Event, Lease, ServiceAccount: small kinds with a few rules each."""
from __future__ import annotations

from typing import Any

from .base import KindStrategy
from .fields import Cause, Path, invalid, non_negative, one_of, positive
from .meta import as_dict


class EventStrategy(KindStrategy):
    kind = "Event"
    allow_create_on_update = True
    field_labels = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                    "reason", "reportingComponent", "source", "type")

    def field_value(self, obj: dict[str, Any], path: str) -> str:
        if path == "source":  # the reporting component, in either of its places
            return super().field_value(obj, "source.component") or super().field_value(obj, "reportingComponent")
        return super().field_value(obj, path)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        involved = obj["involvedObject"]
        namespace = as_dict(obj.get("metadata")).get("namespace", "")
        causes = one_of(Path("type"), obj.get("type") or None, ("Normal", "Warning"))
        # Events about cluster-scoped objects live in "default"; otherwise namespaces must agree.
        if involved.get("namespace") and namespace and involved["namespace"] != namespace:
            causes.append(invalid(Path("involvedObject").child("namespace"), involved["namespace"],
                                  "does not match event.namespace"))
        causes += non_negative(Path("count"), obj.get("count"))
        return causes


class LeaseStrategy(KindStrategy):
    kind = "Lease"
    allow_create_on_update = True

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        return (positive(path.child("leaseDurationSeconds"), spec.get("leaseDurationSeconds"))
                + non_negative(path.child("leaseTransitions"), spec.get("leaseTransitions")))


class ServiceAccountStrategy(KindStrategy):
    kind = "ServiceAccount"
