"""apps/v1 ControllerRevision: an immutable snapshot a DaemonSet or StatefulSet keeps of its pod template.

As in Kubernetes, `data` may not change once written (a revision is history); `revision`, its
place in that history, may: the controllers bump it when a template comes back. `data` is opaque
(a RawExtension): it is stored as sent, nulls included, since clients compare it byte for byte
(kubectl's `rollout undo` decides "already matches" that way).
"""
from __future__ import annotations

from typing import Any

from .base import KindStrategy, drop_nulls
from .fields import Cause, Path, immutable, non_negative


class ControllerRevisionStrategy(KindStrategy):
    kind = "ControllerRevision"

    def default(self, obj: dict[str, Any]) -> None:
        if not isinstance(obj, dict):
            return
        data = obj.pop("data", None)
        drop_nulls(obj)
        if data is not None:
            obj["data"] = data

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes = non_negative(Path("revision"), obj.get("revision"))
        if old is not None and obj.get("data") != old.get("data"):
            causes.append(immutable(Path("data"), obj.get("data")))
        return causes
