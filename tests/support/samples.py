"""A minimal valid object of every kind in pklib.resources, as a user would write it."""
from __future__ import annotations

import copy
from typing import Any

from pklib.resources import Resource

POD_SPEC = {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
_SELECTOR = {"matchLabels": {"app": "web"}}
_TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}
_JOB_SPEC = {"template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}


def _body(kind: str) -> dict[str, Any]:
    bodies: dict[str, dict[str, Any]] = {
        "Namespace": {},
        "Pod": {"spec": POD_SPEC},
        "Service": {"spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        "Endpoints": {"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 8080}]}]},
        "Node": {"spec": {"podCIDR": "10.244.1.0/24"}},
        "ConfigMap": {"data": {"key": "value"}},
        "Secret": {"type": "Opaque", "data": {"password": "c2VjcmV0"}},
        "PersistentVolume": {"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                      "hostPath": {"path": "/tmp/pv"}}},
        "PersistentVolumeClaim": {"spec": {"accessModes": ["ReadWriteOnce"],
                                           "resources": {"requests": {"storage": "1Gi"}}}},
        "Event": {"involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
                  "reason": "Started", "message": "started", "type": "Normal"},
        "ServiceAccount": {},
        "Deployment": {"spec": {"replicas": 2, "selector": _SELECTOR, "template": _TEMPLATE}},
        "ReplicaSet": {"spec": {"replicas": 2, "selector": _SELECTOR, "template": _TEMPLATE}},
        "DaemonSet": {"spec": {"selector": _SELECTOR, "template": _TEMPLATE}},
        "StatefulSet": {"spec": {"replicas": 1, "serviceName": "web", "selector": _SELECTOR,
                                 "template": _TEMPLATE}},
        "Job": {"spec": _JOB_SPEC},
        "CronJob": {"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": _JOB_SPEC}}},
        "Lease": {"spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}},
        "ControllerRevision": {"data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 1},
        "EndpointSlice": {"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.5"]}],
                          "ports": [{"port": 8080, "protocol": "TCP"}]},
        "StorageClass": {"provisioner": "pkube.io/hostpath"},
        "PriorityClass": {"value": 1000, "description": "for tests"},
        "PodDisruptionBudget": {"spec": {"minAvailable": 1, "selector": _SELECTOR}},
        "Ingress": {"spec": {"rules": [{"host": "web.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}},
        "IngressClass": {"spec": {"controller": "example.com/ingress-controller"}},
        "Role": {"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]},
        "ClusterRole": {"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]},
        "RoleBinding": {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]},
        "ClusterRoleBinding": {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                           "name": "view"},
                               "subjects": [{"kind": "Group", "name": "devs",
                                             "apiGroup": "rbac.authorization.k8s.io"}]},
    }
    return bodies[kind]


def sample(res: Resource, name: str, namespace: str | None = None, labels: dict[str, str] | None = None
           ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if res.namespaced and namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    body = {"apiVersion": res.api_version, "kind": res.kind, "metadata": meta, **copy.deepcopy(_body(res.kind))}
    if res.kind == "Event" and namespace:
        body["involvedObject"]["namespace"] = namespace  # an event lives in its object's namespace
    return body
