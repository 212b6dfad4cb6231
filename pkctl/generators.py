"""Objects built from command-line arguments (`pkctl create deployment|configmap|secret`), as kubectl builds them.

Pure functions: arguments in, object dict out; bad arguments raise GeneratorError with the message.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

# Keys of ConfigMap/Secret data (Kubernetes' IsConfigMapKey).
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")


class GeneratorError(Exception):
    pass


def container_name(image: str) -> str:
    """`registry:5000/team/busybox:1.36@sha256:...` -> `busybox`: kubectl names containers after the image."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    name = last.split(":", 1)[0].lower()
    return re.sub(r"[^a-z0-9-]", "-", name).strip("-") or "container"


def deployment(name: str, images: list[str], replicas: int, port: int | None,
               command: list[str] | None) -> dict[str, Any]:
    if not images:
        raise GeneratorError("required flag(s) \"image\" not set")
    if replicas < 0:
        raise GeneratorError("--replicas must be greater than or equal to 0")
    if command and len(images) > 1:
        raise GeneratorError("cannot specify multiple --image options and command")
    labels = {"app": name}
    containers: list[dict[str, Any]] = []
    used: set[str] = set()
    for image in images:
        base = container_name(image)
        cname, n = base, 1
        while cname in used:  # two images of the same name: busybox, busybox-1, ...
            cname, n = f"{base}-{n}", n + 1
        used.add(cname)
        c: dict[str, Any] = {"name": cname, "image": image, "resources": {}}
        if port is not None:
            c["ports"] = [{"containerPort": port}]
        if command:
            c["command"] = list(command)
        containers.append(c)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)}, "strategy": {},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": containers}}}}


def _literal(arg: str) -> tuple[str, str]:
    key, sep, value = arg.partition("=")
    if not sep or not key:
        raise GeneratorError(f"invalid literal source {arg}, expected key=value")
    return key, value


def _files(arg: str) -> list[tuple[str, Path]]:
    """`--from-file=[key=]path`; a directory gives one key per regular file in it."""
    key, sep, path = arg.partition("=")
    if not sep:
        key, path = "", arg
    p = Path(path)
    if p.is_dir():
        if key:
            raise GeneratorError(f"cannot give a key name for a directory path: {arg}")
        return [(f.name, f) for f in sorted(p.iterdir()) if f.is_file()]
    if not p.is_file():
        raise GeneratorError(f"error reading {path}: no such file or directory")
    return [(key or p.name, p)]


def _collect(kind: str, name: str, literals: list[str], files: list[str]) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    pairs: list[tuple[str, bytes]] = [(k, v.encode()) for k, v in map(_literal, literals)]
    for arg in files:
        for key, path in _files(arg):
            try:
                pairs.append((key, path.read_bytes()))
            except OSError as e:
                raise GeneratorError(f"error reading {path}: {e.strerror}") from None
    for key, value in pairs:
        if not _DATA_KEY.match(key):
            raise GeneratorError(f'"{key}" is not a valid key name for a {kind}: a valid key must consist of '
                                 "alphanumeric characters, '-', '_' or '.'")
        if key in data:
            raise GeneratorError(f'cannot add key "{key}", another key by that name already exists in data for '
                                 f'{kind} "{name}"')
        data[key] = value
    return data


def configmap(name: str, literals: list[str], files: list[str]) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    for key, value in _collect("ConfigMap", name, literals, files).items():
        try:
            obj.setdefault("data", {})[key] = value.decode()
        except UnicodeDecodeError:
            # Not text: ConfigMaps keep such values base64-encoded in binaryData.
            obj.setdefault("binaryData", {})[key] = base64.b64encode(value).decode()
    return obj


def secret(name: str, literals: list[str], files: list[str], secret_type: str | None) -> dict[str, Any]:
    data = _collect("Secret", name, literals, files)
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                           "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    if secret_type:
        obj["type"] = secret_type
    return obj


def docker_registry_secret(name: str, server: str, username: str | None, password: str | None, email: str | None,
                           files: list[str]) -> dict[str, Any]:
    """kubectl's `create secret docker-registry`: type kubernetes.io/dockerconfigjson, key .dockerconfigjson."""
    if files:
        data = _collect("Secret", name, [], files)
    else:
        if not username or not password:
            raise GeneratorError("--docker-username and --docker-password are required (or --from-file)")
        entry = {"username": username, "password": password, **({"email": email} if email else {}),
                 "auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        data = {".dockerconfigjson": json.dumps({"auths": {server: entry}}, separators=(",", ":")).encode()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def _run_once_pod_template(name: str, image: str, command: list[str] | None, restart: str) -> dict[str, Any]:
    """kubectl's pod template of `create job|cronjob`: one container named after the object."""
    container: dict[str, Any] = {"name": name, "image": image, "resources": {}}
    if command:
        container["command"] = list(command)
    return {"metadata": {}, "spec": {"containers": [container], "restartPolicy": restart}}


def job(name: str, image: str | None, command: list[str] | None) -> dict[str, Any]:
    if not image:
        raise GeneratorError("either --image or --from must be specified")
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": _run_once_pod_template(name, image, command, "Never")}}


def job_from_cronjob(name: str, cronjob: dict[str, Any]) -> dict[str, Any]:
    """`create job NAME --from=cronjob/X`: a Job from X's template, owned by X and marked as started by hand."""
    template = cronjob.get("spec", {}).get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    cmeta = cronjob.get("metadata") or {}
    annotations = {"cronjob.kubernetes.io/instantiate": "manual", **(tmeta.get("annotations") or {})}
    meta: dict[str, Any] = {"name": name, "annotations": annotations,
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                                 "name": cmeta.get("name", ""), "uid": cmeta.get("uid", ""),
                                                 "controller": True}]}
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template.get("spec") or {}}


def cronjob(name: str, image: str | None, schedule: str | None, restart: str,
            command: list[str] | None) -> dict[str, Any]:
    if not image:
        raise GeneratorError("required flag(s) \"image\" not set")
    if not schedule:
        raise GeneratorError("required flag(s) \"schedule\" not set")
    if restart not in ("OnFailure", "Never"):
        raise GeneratorError(f"invalid restart policy: {restart}")
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {
                "metadata": {"name": name},
                "spec": {"template": _run_once_pod_template(name, image, command, restart)}}}}


_PUBLISH = re.compile(r"^(?:(?P<ip>\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):)?(?:(?P<host>\d+(?:-\d+)?):)?(?P<ctr>\d+(?:-\d+)?)"
                      r"(?:/(?P<proto>tcp|udp|sctp))?$", re.I)


def _port_range(text: str, what: str, spec: str) -> list[int]:
    first, _, last = text.partition("-")
    lo, hi = int(first), int(last or first)
    if not (0 < lo <= hi < 65536):
        raise GeneratorError(f"invalid {what} port {text!r} in {spec!r}: ports are 1-65535")
    return list(range(lo, hi + 1))


def published_ports(spec: str, require_host: bool = True) -> list[dict[str, Any]]:
    """Docker's `-p [IP:][HOST:]CONTAINER[/PROTO]` (ranges `8000-8001:80-81` too) as container ports with hostPorts.

    Without a HOST part Docker picks a free host port; a hostPort is fixed in the pod spec, so that is an error
    when `require_host`, and otherwise a container port that is not published (Compose's `ports: ["80"]`).
    """
    m = _PUBLISH.match(spec.strip())
    if not m:
        raise GeneratorError(f"invalid port publication {spec!r}: expected [IP:]HOST_PORT:CONTAINER_PORT[/udp]")
    ctr = _port_range(m["ctr"], "container", spec)
    proto = (m["proto"] or "tcp").upper()
    if not m["host"]:
        if require_host or m["ip"]:
            raise GeneratorError(f"port publication {spec!r} needs a host port (HOST_PORT:CONTAINER_PORT): "
                                 "pkube does not choose one")
        return [{"containerPort": c, "protocol": proto} for c in ctr]
    host = _port_range(m["host"], "host", spec)
    if len(host) != len(ctr):
        raise GeneratorError(f"invalid port publication {spec!r}: the host and container ranges differ in size")
    ip = (m["ip"] or "").strip("[]")
    if ip and ip != "0.0.0.0" and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip):
        raise GeneratorError(f"invalid host IP {ip!r} in {spec!r}: an IPv4 address is expected")
    return [{"containerPort": c, "hostPort": h, "protocol": proto, **({"hostIP": ip} if ip and ip != "0.0.0.0" else {})}
            for h, c in zip(host, ctr)]


def env_vars(pairs: list[str]) -> list[dict[str, str]]:
    """`K=V` (as `-e`/`--env` take them) -> container env entries; a later K replaces an earlier one."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GeneratorError(f"invalid env {pair!r}: expected KEY=VALUE")
        out[key] = value
    return [{"name": k, "value": v} for k, v in out.items()]


def labels_arg(text: str) -> dict[str, str]:
    """`a=b,c=d` -> {"a": "b", "c": "d"}."""
    out = {}
    for pair in filter(None, text.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GeneratorError(f"invalid label {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def pod(name: str, image: str, *, ports: list[dict[str, Any]] | None = None, env: list[dict[str, str]] | None = None,
        labels: dict[str, str] | None = None, restart: str = "Always", command: list[str] | None = None,
        as_command: bool = False) -> dict[str, Any]:
    """The Pod `kubectl run NAME --image I` creates (label run=NAME unless --labels), plus Docker's -p and -e."""
    if not image:
        raise GeneratorError("required flag(s) \"image\" not set")
    if restart not in ("Always", "OnFailure", "Never"):
        raise GeneratorError(f"invalid restart policy: {restart}")
    c: dict[str, Any] = {"name": name, "image": image, "resources": {}}
    if command:
        c["command" if as_command else "args"] = list(command)
    if env:
        c["env"] = env
    merged: dict[tuple[int, str], dict[str, Any]] = {}
    for p in ports or []:
        key = (p["containerPort"], p.get("protocol", "TCP"))
        if key in merged and "hostPort" in merged[key] and "hostPort" in p:
            raise GeneratorError(f"container port {key[0]}/{key[1]} is published twice")
        merged[key] = {**merged.get(key, {}), **p}
    if merged:
        c["ports"] = list(merged.values())
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": dict(labels) if labels else {"run": name}},
            "spec": {"containers": [c], "dnsPolicy": "ClusterFirst", "restartPolicy": restart}, "status": {}}


def service_for(name: str, selector: dict[str, str], labels: dict[str, str], port: int,
                target_port: int | str | None, protocol: str = "TCP", svc_type: str | None = None,
                node_port: int | None = None) -> dict[str, Any]:
    """The Service `kubectl expose` makes for an object whose pods match `selector`."""
    if not selector:
        raise GeneratorError("couldn't retrieve selectors via --selector flag or introspection")
    if svc_type not in (None, "ClusterIP", "NodePort", "LoadBalancer"):
        raise GeneratorError(f"invalid --type {svc_type!r}: ClusterIP, NodePort or LoadBalancer")
    p: dict[str, Any] = {"port": port, "protocol": protocol.upper(),
                         "targetPort": target_port if target_port not in (None, "") else port}
    if isinstance(p["targetPort"], str) and p["targetPort"].isdigit():
        p["targetPort"] = int(p["targetPort"])
    if node_port:
        p["nodePort"] = node_port
    spec: dict[str, Any] = {"ports": [p], "selector": dict(selector)}
    if svc_type:
        spec["type"] = svc_type
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec, "status": {"loadBalancer": {}}}
