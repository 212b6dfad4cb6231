"""Decoding `application/vnd.kubernetes.protobuf` request bodies into plain JSON-style dicts.

kubectl's typed commands (`kubectl create namespace|configmap|secret|deployment|service|
serviceaccount`) send protobuf and offer no fallback to JSON, so the API server has to read
it. The envelope is the 4-byte magic `k8s\\0` followed by a runtime.Unknown message
(typeMeta {apiVersion, kind}, raw, contentEncoding, contentType); `raw` is the object in
the wire format of k8s.io/api's generated.proto. The field tables below cover the kinds
those commands create; a field we have no table entry for is refused with a 415 naming it
rather than silently dropped. Responses stay JSON (these clients accept it).

Go writes every non-pointer field, zero or not; JSON omits them (`omitempty`). Zero scalars
and empty messages are dropped here so that defaulting sees "unset" exactly as Kubernetes does.
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

from .status import StatusError

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# message -> field number -> (json name, type, repeated). Types: string, bytes, bool, int (varint),
# map:string, map:bytes, map:Quantity (map<string, value>), a message name, or special: Time, IntOrString.
F = tuple[str, str, bool]
MESSAGES: dict[str, dict[int, F]] = {
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False),
                3: ("contentEncoding", "string", False), 4: ("contentType", "string", False)},
    "ObjectMeta": {1: ("name", "string", False), 2: ("generateName", "string", False),
                   3: ("namespace", "string", False), 4: ("selfLink", "string", False),
                   5: ("uid", "string", False), 6: ("resourceVersion", "string", False),
                   7: ("generation", "int", False), 8: ("creationTimestamp", "Time", False),
                   9: ("deletionTimestamp", "Time", False), 10: ("deletionGracePeriodSeconds", "int", False),
                   11: ("labels", "map:string", False), 12: ("annotations", "map:string", False),
                   13: ("ownerReferences", "OwnerReference", True), 14: ("finalizers", "string", True)},
    "OwnerReference": {1: ("kind", "string", False), 3: ("name", "string", False), 4: ("uid", "string", False),
                       5: ("apiVersion", "string", False), 6: ("controller", "bool", False),
                       7: ("blockOwnerDeletion", "bool", False)},
    "LabelSelector": {1: ("matchLabels", "map:string", False),
                      2: ("matchExpressions", "LabelSelectorRequirement", True)},
    "LabelSelectorRequirement": {1: ("key", "string", False), 2: ("operator", "string", False),
                                 3: ("values", "string", True)},
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False),
                  3: ("status", "Empty", False)},
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map:string", False),
                  3: ("binaryData", "map:bytes", False), 4: ("immutable", "bool", False)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map:bytes", False), 3: ("type", "string", False),
               4: ("stringData", "map:string", False), 5: ("immutable", "bool", False)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False), 2: ("secrets", "ObjectReference", True),
                       3: ("imagePullSecrets", "LocalObjectReference", True),
                       4: ("automountServiceAccountToken", "bool", False)},
    "ObjectReference": {1: ("kind", "string", False), 2: ("namespace", "string", False),
                        3: ("name", "string", False), 4: ("uid", "string", False),
                        5: ("apiVersion", "string", False), 6: ("resourceVersion", "string", False),
                        7: ("fieldPath", "string", False)},
    "LocalObjectReference": {1: ("name", "string", False)},
    "Service": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "ServiceSpec", False),
                3: ("status", "Empty", False)},
    "ServiceSpec": {1: ("ports", "ServicePort", True), 2: ("selector", "map:string", False),
                    3: ("clusterIP", "string", False), 4: ("type", "string", False),
                    5: ("externalIPs", "string", True), 7: ("sessionAffinity", "string", False),
                    8: ("loadBalancerIP", "string", False), 9: ("loadBalancerSourceRanges", "string", True),
                    10: ("externalName", "string", False), 11: ("externalTrafficPolicy", "string", False),
                    12: ("healthCheckNodePort", "int", False), 13: ("publishNotReadyAddresses", "bool", False),
                    18: ("clusterIPs", "string", True), 19: ("ipFamilies", "string", True),
                    17: ("ipFamilyPolicy", "string", False)},
    "ServicePort": {1: ("name", "string", False), 2: ("protocol", "string", False), 3: ("port", "int", False),
                    4: ("targetPort", "IntOrString", False), 5: ("nodePort", "int", False),
                    6: ("appProtocol", "string", False)},
    "Deployment": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "DeploymentSpec", False),
                   3: ("status", "Empty", False)},
    "DeploymentSpec": {1: ("replicas", "int", False), 2: ("selector", "LabelSelector", False),
                       3: ("template", "PodTemplateSpec", False), 4: ("strategy", "DeploymentStrategy", False),
                       5: ("minReadySeconds", "int", False), 6: ("revisionHistoryLimit", "int", False),
                       7: ("paused", "bool", False), 9: ("progressDeadlineSeconds", "int", False)},
    "DeploymentStrategy": {1: ("type", "string", False), 2: ("rollingUpdate", "RollingUpdateDeployment", False)},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "IntOrString", False), 2: ("maxSurge", "IntOrString", False)},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodSpec", False)},
    # batch/v1 (kubectl create job [--from=cronjob/x] | cronjob)
    "Job": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "JobSpec", False), 3: ("status", "Empty", False)},
    "JobSpec": {1: ("parallelism", "int", False), 2: ("completions", "int", False),
                3: ("activeDeadlineSeconds", "int", False), 4: ("selector", "LabelSelector", False),
                5: ("manualSelector", "bool", False), 6: ("template", "PodTemplateSpec", False),
                7: ("backoffLimit", "int", False), 8: ("ttlSecondsAfterFinished", "int", False),
                9: ("completionMode", "string", False), 10: ("suspend", "bool", False),
                12: ("backoffLimitPerIndex", "int", False), 13: ("maxFailedIndexes", "int", False),
                14: ("podReplacementPolicy", "string", False), 15: ("managedBy", "string", False)},
    "CronJob": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "CronJobSpec", False),
                3: ("status", "Empty", False)},
    "CronJobSpec": {1: ("schedule", "string", False), 2: ("startingDeadlineSeconds", "int", False),
                    3: ("concurrencyPolicy", "string", False), 4: ("suspend", "bool", False),
                    5: ("jobTemplate", "JobTemplateSpec", False), 6: ("successfulJobsHistoryLimit", "int", False),
                    7: ("failedJobsHistoryLimit", "int", False), 8: ("timeZone", "string", False)},
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "JobSpec", False)},
    "PodSpec": {2: ("containers", "Container", True), 3: ("restartPolicy", "string", False),
                4: ("terminationGracePeriodSeconds", "int", False), 6: ("dnsPolicy", "string", False),
                7: ("nodeSelector", "map:string", False), 8: ("serviceAccountName", "string", False),
                9: ("serviceAccount", "string", False), 10: ("nodeName", "string", False),
                11: ("hostNetwork", "bool", False), 12: ("hostPID", "bool", False), 13: ("hostIPC", "bool", False),
                15: ("imagePullSecrets", "LocalObjectReference", True), 16: ("hostname", "string", False),
                17: ("subdomain", "string", False), 19: ("schedulerName", "string", False),
                20: ("initContainers", "Container", True), 24: ("priorityClassName", "string", False),
                30: ("enableServiceLinks", "bool", False)},
    "Container": {1: ("name", "string", False), 2: ("image", "string", False), 3: ("command", "string", True),
                  4: ("args", "string", True), 5: ("workingDir", "string", False),
                  6: ("ports", "ContainerPort", True), 7: ("env", "EnvVar", True),
                  8: ("resources", "ResourceRequirements", False), 13: ("terminationMessagePath", "string", False),
                  14: ("imagePullPolicy", "string", False), 16: ("stdin", "bool", False),
                  17: ("stdinOnce", "bool", False), 18: ("tty", "bool", False),
                  20: ("terminationMessagePolicy", "string", False), 24: ("restartPolicy", "string", False)},
    "ContainerPort": {1: ("name", "string", False), 2: ("hostPort", "int", False),
                      3: ("containerPort", "int", False), 4: ("protocol", "string", False),
                      5: ("hostIP", "string", False)},
    "EnvVar": {1: ("name", "string", False), 2: ("value", "string", False)},
    "ResourceRequirements": {1: ("limits", "map:Quantity", False), 2: ("requests", "map:Quantity", False)},
    "Empty": {},  # status: clients send it empty on create; its contents are the server's anyway
    # rbac.authorization.k8s.io/v1 (kubectl create role|clusterrole|rolebinding|clusterrolebinding)
    "PolicyRule": {1: ("verbs", "string", True), 2: ("apiGroups", "string", True), 3: ("resources", "string", True),
                   4: ("resourceNames", "string", True), 5: ("nonResourceURLs", "string", True)},
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "Subject": {1: ("kind", "string", False), 2: ("apiGroup", "string", False), 3: ("name", "string", False),
                4: ("namespace", "string", False)},
    "RoleRef": {1: ("apiGroup", "string", False), 2: ("kind", "string", False), 3: ("name", "string", False)},
    "RoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                    3: ("roleRef", "RoleRef", False)},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True),
                           3: ("roleRef", "RoleRef", False)},
    # authorization.k8s.io/v1 (kubectl auth can-i)
    "ResourceAttributes": {1: ("namespace", "string", False), 2: ("verb", "string", False),
                           3: ("group", "string", False), 4: ("version", "string", False),
                           5: ("resource", "string", False), 6: ("subresource", "string", False),
                           7: ("name", "string", False)},
    "NonResourceAttributes": {1: ("path", "string", False), 2: ("verb", "string", False)},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SelfSubjectAccessReviewSpec", False),
                                3: ("status", "Empty", False)},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", False),
                                    2: ("nonResourceAttributes", "NonResourceAttributes", False)},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SubjectAccessReviewSpec", False),
                            3: ("status", "Empty", False)},
    "SubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", False),
                                2: ("nonResourceAttributes", "NonResourceAttributes", False),
                                3: ("user", "string", False), 4: ("groups", "string", True),
                                6: ("uid", "string", False)},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SelfSubjectRulesReviewSpec", False),
                               3: ("status", "Empty", False)},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string", False)},
    "PodDisruptionBudget": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodDisruptionBudgetSpec", False),
                            3: ("status", "Empty", False)},
    "PodDisruptionBudgetSpec": {1: ("minAvailable", "IntOrString", False), 2: ("selector", "LabelSelector", False),
                                3: ("maxUnavailable", "IntOrString", False),
                                4: ("unhealthyPodEvictionPolicy", "string", False)},
    # kubectl drain's evictions (policy/v1 Eviction).
    "Eviction": {1: ("metadata", "ObjectMeta", False), 2: ("deleteOptions", "DeleteOptions", False)},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int", False), 2: ("preconditions", "Preconditions", False),
                      3: ("orphanDependents", "bool", False), 4: ("propagationPolicy", "string", False),
                      5: ("dryRun", "string", True)},
    "Preconditions": {1: ("uid", "string", False), 2: ("resourceVersion", "string", False)},
    # authentication.k8s.io/v1 (kubectl create token, kubectl auth whoami)
    "BoundObjectReference": {1: ("kind", "string", False), 2: ("apiVersion", "string", False),
                             3: ("name", "string", False), 4: ("uid", "string", False)},
    "TokenRequestSpec": {1: ("audiences", "string", True), 3: ("boundObjectRef", "BoundObjectReference", False),
                         4: ("expirationSeconds", "int", False)},
    "TokenRequest": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "TokenRequestSpec", False),
                     3: ("status", "Empty", False)},
    "TokenReviewSpec": {1: ("token", "string", False), 2: ("audiences", "string", True)},
    "TokenReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "TokenReviewSpec", False),
                    3: ("status", "Empty", False)},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta", False), 2: ("status", "Empty", False)},
}
TOP_LEVEL = ("Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Deployment", "Job", "CronJob", "Role",
             "ClusterRole",
             "RoleBinding", "ClusterRoleBinding", "SelfSubjectAccessReview", "SubjectAccessReview",
             "SelfSubjectRulesReview", "PodDisruptionBudget", "Eviction", "TokenRequest", "TokenReview",
             "SelfSubjectReview")
# Fields that are pointers in Go: a zero value was sent on purpose and is kept.
_KEEP_ZERO = {("DeploymentSpec", "replicas"), ("ServicePort", "port"),
              *(("JobSpec", f) for f in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                                        "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes")),
              *(("CronJobSpec", f) for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit",
                                            "failedJobsHistoryLimit")),
              ("DeleteOptions", "gracePeriodSeconds"), ("PodDisruptionBudgetSpec", "minAvailable"),
              ("PodDisruptionBudgetSpec", "maxUnavailable")}


def unsupported(message: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", f"protobuf request body: {message}; send JSON instead")


def malformed(message: str) -> StatusError:
    return StatusError(400, "BadRequest", f"error decoding protobuf request body: {message}")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):  # a varint has at most 10 bytes
        if pos >= len(data):
            raise malformed("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise malformed("varint too long")


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) in order: value is an int (varint/fixed) or bytes (length-delimited)."""
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise malformed("truncated field")
            value, pos = data[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise malformed("truncated field")
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        else:
            raise unsupported(f"wire type {wire} is not supported")
        out.append((number, wire, value))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind: str, raw: Any) -> Any:
    if kind == "string":
        return bytes(raw).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(raw)).decode()  # JSON carries []byte as base64
    if kind == "bool":
        return bool(raw)
    if kind == "int":
        return _signed(raw)
    raise AssertionError(kind)


def _time(raw: bytes) -> str | None:
    seconds = 0
    for number, _, value in _fields(raw):
        if number == 1:
            seconds = _signed(value)
    if seconds == 0:
        return None  # Go's zero time: "not set"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(raw: bytes) -> int | str:
    parts = {n: v for n, _, v in _fields(raw)}
    if parts.get(1, 0) == 1:
        return bytes(parts.get(3, b"")).decode()
    return _signed(parts.get(2, 0))


def _map(raw_entries: list[bytes], value_kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in raw_entries:
        parts = {n: v for n, _, v in _fields(entry)}
        key = bytes(parts.get(1, b"")).decode()
        value = parts.get(2, b"")
        if value_kind == "Quantity":
            out[key] = bytes({n: v for n, _, v in _fields(value)}.get(1, b"")).decode()
        else:
            out[key] = _scalar(value_kind, value)
    return out


def _is_zero(value: Any) -> bool:
    return value is None or value == "" or value is False or value == 0 or value == {} or value == []


def decode_message(message: str, data: bytes) -> dict[str, Any]:
    table = MESSAGES[message]
    out: dict[str, Any] = {}
    map_entries: dict[str, list[bytes]] = {}
    for number, _, raw in _fields(data):
        spec = table.get(number)
        if spec is None:
            # Go writes unset non-pointer fields too: only a field that carries a value is refused.
            if message == "Empty" or raw == 0 or raw == b"":
                continue
            raise unsupported(f"field {number} of {message} is not supported by this server")
        name, kind, repeated = spec
        if kind.startswith("map:"):
            map_entries.setdefault(name, []).append(raw)
            continue
        if kind == "Time":
            value: Any = _time(raw)
        elif kind == "IntOrString":
            value = _int_or_string(raw)
        elif kind in MESSAGES:
            value = decode_message(kind, raw)
        else:
            value = _scalar(kind, raw)
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    for name, entries in map_entries.items():
        kind = next(k for n, k, _ in table.values() if n == name)
        out[name] = _map(entries, kind[4:])
    return {k: v for k, v in out.items()
            if not _is_zero(v) or (message, k) in _KEEP_ZERO and isinstance(v, int) and not isinstance(v, bool)}


def decode_object(body: bytes) -> dict[str, Any]:
    """The object in a protobuf request body, as the JSON decoder would have produced it.

    Bytes that do not decode (a string field that is not UTF-8, a time out of range) are a 400."""
    try:
        return _decode_object(body)
    except UnicodeDecodeError as e:
        raise malformed(f"a string field is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except (ValueError, OverflowError, OSError) as e:
        raise malformed(str(e)) from None


def _decode_object(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise unsupported("missing the k8s protobuf envelope")
    envelope = _fields(body[len(MAGIC):])
    type_meta: dict[int, str] = {}
    raw = b""
    for number, _, value in envelope:
        if number == 1:
            type_meta = {n: bytes(v).decode() for n, _, v in _fields(value)}
        elif number == 2:
            raw = bytes(value)
        elif number == 3 and value:
            raise unsupported("compressed content is not supported")
    kind = type_meta.get(2, "")
    if kind not in TOP_LEVEL:
        raise unsupported(f'kind "{kind}" cannot be sent as protobuf to this server')
    obj = decode_message(kind, raw)
    return {"apiVersion": type_meta.get(1, ""), "kind": kind, **obj}
