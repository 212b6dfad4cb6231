"""The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount): a pod runs as a ServiceAccount.

On create, a pod's `spec.serviceAccountName` defaults to `default` (and `serviceAccount`, its deprecated
twin, follows it), and its `imagePullSecrets` to the ServiceAccount's when it has none. Unless the pod or its
ServiceAccount says `automountServiceAccountToken: false`, the pod gets the projected volume
`kube-api-access-<5 chars>` (a bound token the kubelet requests and refreshes, the cluster CA from the
`kube-root-ca.crt` ConfigMap, the namespace) mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount
in every container that does not mount something there already. A pod naming a ServiceAccount that does not
exist is refused, as in Kubernetes; the `default` one is let through, since the controller that creates it may
not have caught up with a brand-new namespace yet (the kubelet's token request waits for it).
"""
from __future__ import annotations

import random
from typing import Any, Awaitable, Callable

from ..status import StatusError

Obj = dict[str, Any]
Lookup = Callable[[str], Awaitable[Obj | None]]  # ServiceAccount name -> the object in the pod's namespace

DEFAULT_SERVICE_ACCOUNT = "default"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
TOKEN_EXPIRATION = 3607  # Kubernetes' kubelet-managed token: an hour and a bit, refreshed at 80 %
_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def token_volume(name: str) -> Obj:
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


def _automount(pod_spec: Obj, sa: Obj | None) -> bool:
    if isinstance(pod_spec.get("automountServiceAccountToken"), bool):
        return bool(pod_spec["automountServiceAccountToken"])
    if sa is not None and isinstance(sa.get("automountServiceAccountToken"), bool):
        return bool(sa["automountServiceAccountToken"])
    return True


def _mounts_token_path(container: Obj) -> bool:
    return any(isinstance(m, dict) and str(m.get("mountPath") or "").rstrip("/") == MOUNT_PATH
               for m in container.get("volumeMounts") or ())


def _is_token_volume(volume: Any) -> bool:
    return isinstance(volume, dict) and str(volume.get("name") or "").startswith(VOLUME_PREFIX)


async def admit_pod(pod: Obj, lookup: Lookup) -> None:
    """Mutates a pod being created (validation runs after this, as after Kubernetes' mutating admission)."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
    if not isinstance(name, str):
        return  # validation reports it
    spec["serviceAccountName"] = spec["serviceAccount"] = name
    if (pod.get("metadata") or {}).get("annotations", {}).get("kubernetes.io/config.mirror"):
        return  # static pods never get credentials
    sa = await lookup(name)
    if sa is None and name != DEFAULT_SERVICE_ACCOUNT:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        pod_name = (pod.get("metadata") or {}).get("name", "")
        raise StatusError(403, "Forbidden", f'pods "{pod_name}" is forbidden: error looking up service account '
                                            f'{namespace}/{name}: serviceaccount "{name}" not found',
                          {"name": pod_name, "kind": "pods"})
    if sa is not None and not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [dict(ref) for ref in sa["imagePullSecrets"] if isinstance(ref, dict)]
    if not _automount(spec, sa):
        return
    volumes = spec.get("volumes")
    if volumes is not None and not isinstance(volumes, list):
        return
    volumes = volumes or []
    existing = next((v["name"] for v in volumes if _is_token_volume(v)), None)
    volume_name = existing or VOLUME_PREFIX + "".join(random.choices(_CHARS, k=5))
    if existing is None:
        spec["volumes"] = [*volumes, token_volume(volume_name)]
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or ():
            if not isinstance(container, dict) or _mounts_token_path(container):
                continue
            mounts = container.get("volumeMounts")
            if mounts is not None and not isinstance(mounts, list):
                continue
            container["volumeMounts"] = [*(mounts or []), {"name": volume_name, "readOnly": True,
                                                            "mountPath": MOUNT_PATH}]
