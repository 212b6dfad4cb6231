"""ConfigMap and Secret: key syntax, size limits, `immutable: true`, and Secret types."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from pklib import validation as v

from .base import KindStrategy
from .fields import Cause, Path, forbidden, immutable, invalid, required, too_long
from .meta import as_dict

# Kubernetes' MaxSecretSize / the ConfigMap limit: both 1 MiB of data.
MAX_DATA_BYTES = 1024 * 1024
_IMMUTABLE_DETAIL = "field is immutable when `immutable` is set"
# Keys each built-in Secret type must carry.
_SECRET_TYPE_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _validate_keys(data: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for key in data:
        causes += [invalid(path, key, e) for e in v.is_config_map_key(key)]
    return causes


def _validate_immutable(obj: dict[str, Any], old: dict[str, Any] | None, fields: tuple[str, ...]) -> list[Cause]:
    if old is None or old.get("immutable") is not True:
        return []
    causes: list[Cause] = []
    if obj.get("immutable") is not True:
        causes.append(forbidden(Path("immutable"), _IMMUTABLE_DETAIL))
    for field in fields:
        if obj.get(field) != old.get(field):
            causes.append(forbidden(Path(field), _IMMUTABLE_DETAIL))
    return causes


class ConfigMapStrategy(KindStrategy):
    kind = "ConfigMap"

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        data, binary = as_dict(obj.get("data")), as_dict(obj.get("binaryData"))
        causes = _validate_keys(data, Path("data")) + _validate_keys(binary, Path("binaryData"))
        for key, value in binary.items():
            if key in data:
                causes.append(invalid(Path("data"), key, "duplicate of key present in binaryData"))
            if _decode(value) is None:
                causes.append(invalid(Path("binaryData").key(key), "<value omitted>", "must be base64-encoded"))
        size = sum(len(k) + len(x) for k, x in data.items()) + sum(len(k) + len(x) for k, x in binary.items())
        if size > MAX_DATA_BYTES:
            causes.append(too_long(Path(""), MAX_DATA_BYTES))
        return causes + _validate_immutable(obj, old, ("data", "binaryData"))


def _decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


class SecretStrategy(KindStrategy):
    kind = "Secret"
    field_labels = ("type",)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        obj.setdefault("type", "Opaque")
        # stringData is a write-only convenience: it lands base64-encoded in data and is not stored.
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict) and all(isinstance(x, str) for x in string_data.values()):
            data = obj.setdefault("data", {})
            if isinstance(data, dict):
                for key, value in string_data.items():
                    data[key] = base64.b64encode(value.encode()).decode()
        elif string_data is not None:
            obj["stringData"] = string_data  # let validation report it

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        data = as_dict(obj.get("data"))
        causes = _validate_keys(data, Path("data"))
        size = 0
        for key, value in data.items():
            decoded = _decode(value)
            if decoded is None:
                causes.append(invalid(Path("data").key(key), "<secret contents redacted>", "must be base64-encoded"))
            else:
                size += len(decoded)
        if size > MAX_DATA_BYTES:
            causes.append(too_long(Path("data"), MAX_DATA_BYTES))
        secret_type = obj.get("type", "Opaque")
        for key in _SECRET_TYPE_KEYS.get(secret_type, ()):
            if key not in data:
                causes.append(required(Path("data").key(key)))
        if secret_type == "kubernetes.io/service-account-token":
            annotations = as_dict(as_dict(obj.get("metadata")).get("annotations"))
            if not annotations.get("kubernetes.io/service-account.name"):
                causes.append(required(Path("metadata").child("annotations").key(
                    "kubernetes.io/service-account.name")))
        if old is not None and old.get("type", "Opaque") != secret_type:
            causes.append(immutable(Path("type"), secret_type))
        return causes + _validate_immutable(obj, old, ("data",))
