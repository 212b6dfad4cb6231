"""Objects built from command-line arguments (`pkctl create deployment|configmap|secret`), as kubectl builds them.

Pure functions: arguments in, object dict out; bad arguments raise GeneratorError with the message.
"""
from __future__ import annotations

import base64
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
