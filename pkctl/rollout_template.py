"""A pod template as `kubectl rollout history --revision N` prints it (kubectl's DescribePodTemplate).

kubectl writes these lines through a prefix writer without a tabwriter, so the cells are separated
by raw tabs; we keep that, so the output is byte-for-byte kubectl's for the fields covered here
(labels, annotations, containers with ports, command, args, resources, probes, env, mounts, volumes,
node selectors, tolerations). Pure: a template dict in, text out.
"""
from __future__ import annotations

from typing import Any

from pklib.api.wellknown import LAST_APPLIED_ANNOTATION

Obj = dict[str, Any]
NONE = "<none>"


def _ind(level: int) -> str:
    return "  " * level


def _multiline(lines: list[str], title: str, items: list[str]) -> None:
    """`  Labels:\\ta=b` with further items on lines of their own, each after a tab (kubectl's layout)."""
    if not items:
        lines.append(f"{title}:\t{NONE}")
        return
    lines.append(f"{title}:\t{items[0]}")
    lines.extend(f"\t{item}" for item in items[1:])


def _port(value: Any) -> str:
    return "" if value is None else str(value)


def probe_text(probe: Obj) -> str:
    attrs = (f"delay={int(probe.get('initialDelaySeconds') or 0)}s timeout={int(probe.get('timeoutSeconds') or 1)}s "
             f"period={int(probe.get('periodSeconds') or 10)}s #success={int(probe.get('successThreshold') or 1)} "
             f"#failure={int(probe.get('failureThreshold') or 3)}")
    if "exec" in probe:
        return f"exec [{' '.join((probe['exec'] or {}).get('command') or [])}] {attrs}"
    if "httpGet" in probe:
        get = probe["httpGet"] or {}
        scheme = str(get.get("scheme") or "HTTP").lower()
        host = get.get("host") or ""
        port = _port(get.get("port"))
        netloc = f"[{host}]:{port}" if ":" in host and port else f"{host}:{port}" if port else host
        return f"http-get {scheme}://{netloc}{get.get('path') or ''} {attrs}"
    if "tcpSocket" in probe:
        sock = probe["tcpSocket"] or {}
        return f"tcp-socket {sock.get('host') or ''}:{_port(sock.get('port'))} {attrs}"
    if "grpc" in probe:
        grpc = probe["grpc"] or {}
        return f"grpc <pod>:{grpc.get('port')} {grpc.get('service') or ''} {attrs}"
    return f"unknown {attrs}"


def env_source_text(source: Obj) -> str:
    """How kubectl describes an env var's valueFrom (pods and pod templates alike)."""
    if "fieldRef" in source:
        ref = source["fieldRef"] or {}
        return f" ({ref.get('apiVersion') or 'v1'}:{ref.get('fieldPath', '')})"
    if "resourceFieldRef" in source:
        return f" ({(source['resourceFieldRef'] or {}).get('resource', '')})"
    for key, what, word in (("secretKeyRef", "secret", "in"), ("configMapKeyRef", "config map", "of")):
        if key in source:
            ref = source[key] or {}
            optional = "true" if ref.get("optional") else "false"
            return (f"<set to the key '{ref.get('key', '')}' {word} {what} '{ref.get('name', '')}'>"
                    f"\tOptional: {optional}")
    return ""


def _env_line(e: Obj) -> list[str]:
    name, source = e.get("name", ""), e.get("valueFrom")
    if not source:
        first, *rest = str(e.get("value") or "").split("\n")
        return [f"{_ind(3)}{name}:\t{first}", *(f"{_ind(3)}\t{s}" for s in rest)]
    return [f"{_ind(3)}{name}:\t{env_source_text(source)}"]


def _containers(lines: list[str], title: str, containers: list[Obj]) -> None:
    lines.append(f"  {title}:" + ("" if containers else f" {NONE}"))
    for c in containers:
        lines.append(f"{_ind(1)} {c.get('name', '')}:")
        lines.append(f"{_ind(2)}Image:\t{c.get('image', '')}")
        ports = c.get("ports") or []
        container_ports = ", ".join(f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}" for p in ports)
        host_ports = ", ".join(f"{p.get('hostPort') or 0}/{p.get('protocol') or 'TCP'}" for p in ports)
        lines.append(f"{_ind(2)}{'Ports' if ',' in container_ports else 'Port'}:\t{container_ports or NONE}")
        lines.append(f"{_ind(2)}{'Host Ports' if ',' in host_ports else 'Host Port'}:\t{host_ports or NONE}")
        for key, label in (("command", "Command"), ("args", "Args")):
            if c.get(key):
                lines.append(f"{_ind(2)}{label}:")
                lines.extend(f"{_ind(3)}{s}" for arg in c[key] for s in str(arg).split("\n"))
        resources = c.get("resources") or {}
        for key, label in (("limits", "Limits"), ("requests", "Requests")):
            if resources.get(key):
                lines.append(f"{_ind(2)}{label}:")
                lines.extend(f"{_ind(3)}{name}:\t{resources[key][name]}" for name in sorted(resources[key]))
        for key, label in (("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"),
                           ("startupProbe", "Startup")):
            if c.get(key):
                lines.append(f"{_ind(2)}{label}:\t{probe_text(c[key])}")
        env = c.get("env") or []
        lines.append(f"{_ind(2)}Environment:" + ("" if env else f"\t{NONE}"))
        for e in env:
            lines.extend(_env_line(e))
        mounts = sorted(c.get("volumeMounts") or [], key=lambda m: str(m.get("mountPath", "")))
        lines.append(f"{_ind(2)}Mounts:" + ("" if mounts else f"\t{NONE}"))
        for m in mounts:
            flags = ["ro" if m.get("readOnly") else "rw"] + ([f'path="{m["subPath"]}"'] if m.get("subPath") else [])
            lines.append(f"{_ind(3)}{m.get('mountPath', '')} from {m.get('name', '')} ({','.join(flags)})")


# The volume sources kubectl describes: its words for the type, then (label, field, shown when unset) of the
# fields it prints; None for "unset" marks a boolean, printed true/false.
_VOLUME_SOURCES: dict[str, tuple[str, tuple[tuple[str, str, str | None], ...]]] = {
    "emptyDir": ("EmptyDir (a temporary directory that shares a pod's lifetime)",
                 (("Medium", "medium", ""), ("SizeLimit", "sizeLimit", "<unset>"))),
    "configMap": ("ConfigMap (a volume populated by a ConfigMap)",
                  (("Name", "name", ""), ("Optional", "optional", None))),
    "secret": ("Secret (a volume populated by a Secret)",
               (("SecretName", "secretName", ""), ("Optional", "optional", None))),
    "hostPath": ("HostPath (bare host directory volume)", (("Path", "path", ""), ("HostPathType", "type", NONE))),
    "persistentVolumeClaim": ("PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
                              (("ClaimName", "claimName", ""), ("ReadOnly", "readOnly", None))),
}


def _volume(lines: list[str], v: Obj) -> None:
    lines.append(f"{_ind(1)} {v.get('name', '')}:")
    at = _ind(2)
    kind = next((k for k in _VOLUME_SOURCES if k in v), None)
    if kind is None:
        lines.append(f"{at}<unknown>")
        return
    what, fields = _VOLUME_SOURCES[kind]
    source = v[kind] or {}
    lines.append(f"{at}Type:\t{what}")
    for label, key, unset in fields:
        value = ("true" if source.get(key) else "false") if unset is None else (source.get(key) or unset)
        lines.append(f"{at}{label}:\t{value}")


def _toleration(t: Obj) -> str:
    text = str(t.get("key") or "")
    if t.get("value"):
        text += f"={t['value']}"
    if t.get("effect"):
        text += f":{t['effect']}"
    if t.get("operator") == "Exists" and not t.get("value"):
        text += " op=Exists" if text else "op=Exists"
    if t.get("tolerationSeconds") is not None:
        text += f" for {t['tolerationSeconds']}s"
    return text


def describe_template(template: Obj) -> str:
    """The `Pod Template:` block, each line ending with a newline."""
    meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    lines = ["Pod Template:"]
    _multiline(lines, "  Labels", [f"{k}={v}" for k, v in sorted((meta.get("labels") or {}).items())])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED_ANNOTATION}
    if annotations:
        _multiline(lines, "  Annotations", [f"{k}: {v}" for k, v in sorted(annotations.items())])
    if spec.get("serviceAccountName"):
        lines.append(f"{_ind(1)}Service Account:\t{spec['serviceAccountName']}")
    if spec.get("initContainers"):
        _containers(lines, "Init Containers", spec["initContainers"])
    _containers(lines, "Containers", spec.get("containers") or [])
    volumes = spec.get("volumes") or []
    lines.append("  Volumes:" + ("" if volumes else f"\t{NONE}"))
    for v in volumes:
        _volume(lines, v)
    if spec.get("priorityClassName"):
        lines.append(f"{_ind(1)}Priority Class Name:\t{spec['priorityClassName']}")
    _multiline(lines, "  Node-Selectors", [f"{k}={v}" for k, v in sorted((spec.get("nodeSelector") or {}).items())])
    tolerations = sorted(spec.get("tolerations") or [], key=lambda t: str(t.get("key") or ""))  # kubectl's order
    _multiline(lines, "  Tolerations", [_toleration(t) for t in tolerations])
    return "".join(f"{line}\n" for line in lines)
