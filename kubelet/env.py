"""A container's environment as Kubernetes builds it (kubelet_pods.go makeEnvironmentVariables).

Order: service variables first, then envFrom, then env (later entries win); `$(VAR)` in env values, command and
args refers to variables defined before it; `$$(VAR)` is an escaped literal `$(VAR)`; unknown references stay.
A missing ConfigMap/Secret or key that is not optional is a ConfigError (CreateContainerConfigError).
"""
from __future__ import annotations

import base64
import re
from typing import Any, Awaitable, Callable

from pklib.quantity import QuantityError, parse_quantity

Getter = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (kind "configmaps"/"secrets", name) -> obj


class ConfigError(Exception):
    """The container cannot be configured (Kubernetes waiting reason CreateContainerConfigError)."""


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))
    return _REF.sub(sub, text)


def service_env(services: list[dict[str, Any]]) -> dict[str, str]:
    """<SVC>_SERVICE_HOST/_PORT and the Docker-link style variables for each Service with a cluster IP."""
    out: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        out[f"{prefix}_SERVICE_HOST"] = ip
        out[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                out[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        first = ports[0]
        proto = (first.get("protocol") or "TCP").lower()
        out[f"{prefix}_PORT"] = f"{proto}://{ip}:{first['port']}"
        for p in ports:
            proto = (p.get("protocol") or "TCP")
            base = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            out[base] = f"{proto.lower()}://{ip}:{p['port']}"
            out[f"{base}_PROTO"] = proto.lower()
            out[f"{base}_PORT"] = str(p["port"])
            out[f"{base}_ADDR"] = ip
    return out


def field_ref(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    meta, spec = pod["metadata"], pod["spec"]
    simple = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
              "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""), "status.podIP": pod_ip,
              "status.podIPs": pod_ip, "status.hostIP": host_ip, "status.hostIPs": host_ip}
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


_DIVISOR_DEFAULT = {"cpu": "1", "memory": "1", "ephemeral-storage": "1"}


def resource_field_ref(pod: dict[str, Any], container_name: str, ref: dict[str, Any],
                       node_allocatable: dict[str, str]) -> str:
    """limits.cpu/limits.memory/requests.* of a container, divided by divisor, rounded up (Kubernetes)."""
    target = ref.get("containerName") or container_name
    spec = next((c for c in (pod["spec"].get("containers") or []) + (pod["spec"].get("initContainers") or [])
                 if c["name"] == target), None)
    if spec is None:
        raise ConfigError(f"resourceFieldRef: no container {target!r}")
    kind, _, resource = ref.get("resource", "").partition(".")
    if kind not in ("limits", "requests") or resource not in _DIVISOR_DEFAULT:
        raise ConfigError(f"unsupported resourceFieldRef resource {ref.get('resource')!r}")
    value = ((spec.get("resources") or {}).get(kind) or {}).get(resource)
    if value is None and kind == "limits":
        value = node_allocatable.get(resource)  # no limit: the node's allocatable, as Kubernetes does
    if value is None:
        return "0"
    try:
        quantity = parse_quantity(value).value
        divisor = parse_quantity(ref.get("divisor") or _DIVISOR_DEFAULT[resource]).value
    except QuantityError as e:
        raise ConfigError(f"resourceFieldRef {ref.get('resource')}: {e}") from None
    if divisor <= 0:
        raise ConfigError("resourceFieldRef divisor must be positive")
    return str(-(-quantity // divisor))


def _decode(kind: str, value: str) -> str:
    if kind == "secrets":
        return base64.b64decode(value).decode(errors="replace")
    return value


async def _source(get: Getter, kind: str, name: str, optional: bool, namespace: str) -> dict[str, str] | None:
    obj = await get(kind, name)
    if obj is None:
        if optional:
            return None
        singular = "configmap" if kind == "configmaps" else "secret"
        raise ConfigError(f'{singular} "{name}" not found')
    data = dict(obj.get("data") or {})
    if kind == "configmaps":
        data.update({k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("binaryData") or {}).items()})
        return data
    out = {k: _decode(kind, v) for k, v in data.items()}
    out.update((obj.get("stringData") or {}))
    return out


async def build_env(pod: dict[str, Any], container: dict[str, Any], get: Getter, services: list[dict[str, Any]],
                    pod_ip: str, host_ip: str, node_allocatable: dict[str, str]) -> list[tuple[str, str]]:
    ns = pod["metadata"].get("namespace", "default")
    env: dict[str, str] = service_env(services)  # the caller picks them (enableServiceLinks, the API's Service)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = src.get(key)
            if ref:
                data = await _source(get, kind, ref.get("name", ""), bool(ref.get("optional")), ns)
                for k, v in (data or {}).items():
                    env[prefix + k] = v
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        elif "resourceFieldRef" in vf:
            env[name] = resource_field_ref(pod, container["name"], vf["resourceFieldRef"], node_allocatable)
        else:
            kind, key = ("configmaps", "configMapKeyRef") if "configMapKeyRef" in vf else ("secrets", "secretKeyRef")
            ref = vf.get(key) or {}
            optional = bool(ref.get("optional"))
            data = await _source(get, kind, ref.get("name", ""), optional, ns)
            if data is None:
                continue
            if ref.get("key") not in data:
                if optional:
                    continue
                what = "ConfigMap" if kind == "configmaps" else "Secret"
                raise ConfigError(f"couldn't find key {ref.get('key')} in {what} {ns}/{ref.get('name')}")
            env[name] = data[ref["key"]]
    return list(env.items())
