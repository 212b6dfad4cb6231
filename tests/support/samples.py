"""A minimal valid object of every kind in pklib.resources, as a user would write it."""
from __future__ import annotations

import copy
from typing import Any

from pklib.api import certificates
from pklib.resources import Resource

POD_SPEC = {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
_SELECTOR = {"matchLabels": {"app": "web"}}
_TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}
_JOB_SPEC = {"template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}


def _body(kind: str) -> dict[str, Any]:
    if kind == "CertificateSigningRequest":  # a fresh key and PKCS#10 request, for a signer no controller handles
        request = certificates.new_request("alice", ("devs",))[1]
        return {"spec": certificates.csr_object("x", request, "example.com/signer", ["client auth"])["spec"]}
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
        "LimitRange": {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "10m"}}]}},
        "ResourceQuota": {"spec": {"hard": {"pods": "100", "requests.cpu": "100"}}},
        "ReplicationController": {"spec": {"replicas": 2, "selector": {"app": "web"}, "template": _TEMPLATE}},
        # Named `version.group`: see apiservice()
        "APIService": {"spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 1000,
                                "versionPriority": 15,
                                "service": {"namespace": "default", "name": "example-api", "port": 443}}},
        "HorizontalPodAutoscaler": {"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                                "name": "web"}, "maxReplicas": 3}},
        "Ingress": {"spec": {"rules": [{"host": "web.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}},
        "IngressClass": {"spec": {"controller": "example.com/ingress-controller"}},
        "NetworkPolicy": {"spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}], "ports": [{"port": 8080}]}]}},
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


def apiservice(version: str, group: str = "example.com") -> dict[str, Any]:
    """A user's APIService, which Kubernetes names `version.group` (so it cannot take any name: not in sample())."""
    body = copy.deepcopy(_body("APIService"))
    body["spec"].update(group=group, version=version)
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": f"{version}.{group}"},
            **body}


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
