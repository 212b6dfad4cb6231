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

# message -> its fields, "NUMBER jsonName[:type][[]]" (`[]`: repeated), parsed into
# MESSAGES: message -> field number -> (json name, type, repeated). Types: string (the default), bytes, bool,
# int (varint), map:string, map:bytes, map:Quantity (map<string, value>), a message name, or special: Time,
# IntOrString, Quantity.
F = tuple[str, str, bool]
_SCHEMA: dict[str, str] = {
    "TypeMeta": "1 apiVersion, 2 kind",
    "Unknown": "1 typeMeta:TypeMeta, 2 raw:bytes, 3 contentEncoding, 4 contentType",
    "ObjectMeta": "1 name, 2 generateName, 3 namespace, 4 selfLink, 5 uid, 6 resourceVersion, 7 generation:int, "
                  "8 creationTimestamp:Time, 9 deletionTimestamp:Time, 10 deletionGracePeriodSeconds:int, "
                  "11 labels:map:string, 12 annotations:map:string, 13 ownerReferences:OwnerReference[], "
                  "14 finalizers[]",
    "OwnerReference": "1 kind, 3 name, 4 uid, 5 apiVersion, 6 controller:bool, 7 blockOwnerDeletion:bool",
    "LabelSelector": "1 matchLabels:map:string, 2 matchExpressions:LabelSelectorRequirement[]",
    "LabelSelectorRequirement": "1 key, 2 operator, 3 values[]",
    "Namespace": "1 metadata:ObjectMeta, 2 spec:NamespaceSpec, 3 status:Empty",
    "NamespaceSpec": "1 finalizers[]",
    "ConfigMap": "1 metadata:ObjectMeta, 2 data:map:string, 3 binaryData:map:bytes, 4 immutable:bool",
    "Secret": "1 metadata:ObjectMeta, 2 data:map:bytes, 3 type, 4 stringData:map:string, 5 immutable:bool",
    "ServiceAccount": "1 metadata:ObjectMeta, 2 secrets:ObjectReference[], "
                      "3 imagePullSecrets:LocalObjectReference[], 4 automountServiceAccountToken:bool",
    "ObjectReference": "1 kind, 2 namespace, 3 name, 4 uid, 5 apiVersion, 6 resourceVersion, 7 fieldPath",
    "LocalObjectReference": "1 name",
    "Service": "1 metadata:ObjectMeta, 2 spec:ServiceSpec, 3 status:Empty",
    "ServiceSpec": "1 ports:ServicePort[], 2 selector:map:string, 3 clusterIP, 4 type, 5 externalIPs[], "
                   "7 sessionAffinity, 8 loadBalancerIP, 9 loadBalancerSourceRanges[], 10 externalName, "
                   "11 externalTrafficPolicy, 12 healthCheckNodePort:int, 13 publishNotReadyAddresses:bool, "
                   "18 clusterIPs[], 19 ipFamilies[], 17 ipFamilyPolicy",
    "ServicePort": "1 name, 2 protocol, 3 port:int, 4 targetPort:IntOrString, 5 nodePort:int, 6 appProtocol",
    "Deployment": "1 metadata:ObjectMeta, 2 spec:DeploymentSpec, 3 status:Empty",
    # autoscaling/v1 (what `kubectl autoscale` of v1.32 sends); v2's layout differs and is refused
    "HorizontalPodAutoscaler": "1 metadata:ObjectMeta, 2 spec:HorizontalPodAutoscalerSpec, 3 status:Empty",
    "HorizontalPodAutoscalerSpec": "1 scaleTargetRef:CrossVersionObjectReference, 2 minReplicas:int, "
                                   "3 maxReplicas:int, 4 targetCPUUtilizationPercentage:int",
    "CrossVersionObjectReference": "1 kind, 2 name, 3 apiVersion",
    "DeploymentSpec": "1 replicas:int, 2 selector:LabelSelector, 3 template:PodTemplateSpec, "
                      "4 strategy:DeploymentStrategy, 5 minReadySeconds:int, 6 revisionHistoryLimit:int, "
                      "7 paused:bool, 9 progressDeadlineSeconds:int",
    "DeploymentStrategy": "1 type, 2 rollingUpdate:RollingUpdateDeployment",
    "RollingUpdateDeployment": "1 maxUnavailable:IntOrString, 2 maxSurge:IntOrString",
    "PodTemplateSpec": "1 metadata:ObjectMeta, 2 spec:PodSpec",
    # batch/v1 (kubectl create job [--from=cronjob/x] | cronjob)
    "Job": "1 metadata:ObjectMeta, 2 spec:JobSpec, 3 status:Empty",
    "JobSpec": "1 parallelism:int, 2 completions:int, 3 activeDeadlineSeconds:int, 4 selector:LabelSelector, "
               "5 manualSelector:bool, 6 template:PodTemplateSpec, 7 backoffLimit:int, "
               "8 ttlSecondsAfterFinished:int, 9 completionMode, 10 suspend:bool, 12 backoffLimitPerIndex:int, "
               "13 maxFailedIndexes:int, 14 podReplacementPolicy, 15 managedBy",
    # certificates.k8s.io/v1 (kubectl certificate approve|deny sends the whole object)
    "CertificateSigningRequest": "1 metadata:ObjectMeta, 2 spec:CertificateSigningRequestSpec, "
                                 "3 status:CertificateSigningRequestStatus",
    "CertificateSigningRequestSpec": "1 request:bytes, 7 signerName, 8 expirationSeconds:int, 5 usages[], "
                                     "2 username, 3 uid, 4 groups[], 6 extra:map:ExtraValue",
    "CertificateSigningRequestStatus": "1 conditions:CertificateSigningRequestCondition[], 2 certificate:bytes",
    "CertificateSigningRequestCondition": "1 type, 6 status, 2 reason, 3 message, 4 lastUpdateTime:Time, "
                                          "5 lastTransitionTime:Time",
    "CronJob": "1 metadata:ObjectMeta, 2 spec:CronJobSpec, 3 status:Empty",
    "CronJobSpec": "1 schedule, 2 startingDeadlineSeconds:int, 3 concurrencyPolicy, 4 suspend:bool, "
                   "5 jobTemplate:JobTemplateSpec, 6 successfulJobsHistoryLimit:int, 7 failedJobsHistoryLimit:int, "
                   "8 timeZone",
    "JobTemplateSpec": "1 metadata:ObjectMeta, 2 spec:JobSpec",
    # core/v1 Pod (kubectl debug --copy-to and node/NAME create whole pods, copied from a stored one)
    "Pod": "1 metadata:ObjectMeta, 2 spec:PodSpec, 3 status:Empty",
    "PodSpec": "1 volumes:Volume[], 2 containers:Container[], 3 restartPolicy, 4 terminationGracePeriodSeconds:int, "
               "5 activeDeadlineSeconds:int, 6 dnsPolicy, 7 nodeSelector:map:string, 8 serviceAccountName, "
               "9 serviceAccount, 10 nodeName, 11 hostNetwork:bool, 12 hostPID:bool, 13 hostIPC:bool, "
               "14 securityContext:PodSecurityContext, 15 imagePullSecrets:LocalObjectReference[], 16 hostname, "
               "17 subdomain, 19 schedulerName, 20 initContainers:Container[], "
               "21 automountServiceAccountToken:bool, 22 tolerations:Toleration[], 23 hostAliases:HostAlias[], "
               "24 priorityClassName, 25 priority:int, 26 dnsConfig:PodDNSConfig, 27 shareProcessNamespace:bool, "
               "28 readinessGates:PodReadinessGate[], 29 runtimeClassName, 30 enableServiceLinks:bool, "
               "31 preemptionPolicy, 32 overhead:map:Quantity, 34 ephemeralContainers:EphemeralContainer[], "
               "35 setHostnameAsFQDN:bool, 37 hostUsers:bool",
    "Container": "1 name, 2 image, 3 command[], 4 args[], 5 workingDir, 6 ports:ContainerPort[], 7 env:EnvVar[], "
                 "8 resources:ResourceRequirements, 9 volumeMounts:VolumeMount[], 10 livenessProbe:Probe, "
                 "11 readinessProbe:Probe, 12 lifecycle:Lifecycle, 13 terminationMessagePath, 14 imagePullPolicy, "
                 "15 securityContext:SecurityContext, 16 stdin:bool, 17 stdinOnce:bool, 18 tty:bool, "
                 "19 envFrom:EnvFromSource[], 20 terminationMessagePolicy, 22 startupProbe:Probe, "
                 "23 resizePolicy:ContainerResizePolicy[], 24 restartPolicy",
    # an ephemeral container's fields are a Container's (EphemeralContainerCommon), embedded
    "EphemeralContainer": "1 _inline:Container, 2 targetContainerName",
    "ContainerPort": "1 name, 2 hostPort:int, 3 containerPort:int, 4 protocol, 5 hostIP",
    "ContainerResizePolicy": "1 resourceName, 2 restartPolicy",
    "EnvVar": "1 name, 2 value, 3 valueFrom:EnvVarSource",
    "EnvVarSource": "1 fieldRef:ObjectFieldSelector, 2 resourceFieldRef:ResourceFieldSelector, "
                    "3 configMapKeyRef:KeySelector, 4 secretKeyRef:KeySelector",
    "ObjectFieldSelector": "1 apiVersion, 2 fieldPath",
    "ResourceFieldSelector": "1 containerName, 2 resource, 3 divisor:Quantity",
    # ConfigMapKeySelector and SecretKeySelector: the same fields (a LocalObjectReference embedded)
    "KeySelector": "1 _inline:LocalObjectReference, 2 key, 3 optional:bool",
    "EnvFromSource": "1 prefix, 2 configMapRef:EnvSource, 3 secretRef:EnvSource",
    "EnvSource": "1 _inline:LocalObjectReference, 2 optional:bool",
    "ResourceRequirements": "1 limits:map:Quantity, 2 requests:map:Quantity",
    "VolumeMount": "1 name, 2 readOnly:bool, 3 mountPath, 4 subPath, 5 mountPropagation, 6 subPathExpr, "
                   "7 recursiveReadOnly",
    "Probe": "1 _inline:ProbeHandler, 2 initialDelaySeconds:int, 3 timeoutSeconds:int, 4 periodSeconds:int, "
             "5 successThreshold:int, 6 failureThreshold:int, 7 terminationGracePeriodSeconds:int",
    "ProbeHandler": "1 exec:ExecAction, 2 httpGet:HTTPGetAction, 3 tcpSocket:TCPSocketAction, 4 grpc:GRPCAction",
    "Lifecycle": "1 postStart:LifecycleHandler, 2 preStop:LifecycleHandler",
    "LifecycleHandler": "1 exec:ExecAction, 2 httpGet:HTTPGetAction, 3 tcpSocket:TCPSocketAction, "
                        "4 sleep:SleepAction",
    "ExecAction": "1 command[]",
    "HTTPGetAction": "1 path, 2 port:IntOrString, 3 host, 4 scheme, 5 httpHeaders:HTTPHeader[]",
    "HTTPHeader": "1 name, 2 value",
    "TCPSocketAction": "1 port:IntOrString, 2 host",
    "GRPCAction": "1 port:int, 2 service",
    "SleepAction": "1 seconds:int",
    "SecurityContext": "1 capabilities:Capabilities, 2 privileged:bool, 3 seLinuxOptions:SELinuxOptions, "
                       "4 runAsUser:int, 5 runAsNonRoot:bool, 6 readOnlyRootFilesystem:bool, "
                       "7 allowPrivilegeEscalation:bool, 8 runAsGroup:int, 9 procMount, "
                       "11 seccompProfile:SeccompProfile, 12 appArmorProfile:AppArmorProfile",
    "PodSecurityContext": "1 seLinuxOptions:SELinuxOptions, 2 runAsUser:int, 3 runAsNonRoot:bool, "
                          "4 supplementalGroups:int[], 5 fsGroup:int, 6 runAsGroup:int, 7 sysctls:Sysctl[], "
                          "9 fsGroupChangePolicy, 10 seccompProfile:SeccompProfile, "
                          "11 appArmorProfile:AppArmorProfile, 12 supplementalGroupsPolicy",
    "Capabilities": "1 add[], 2 drop[]",
    "SELinuxOptions": "1 user, 2 role, 3 type, 4 level",
    "SeccompProfile": "1 type, 2 localhostProfile",
    "AppArmorProfile": "1 type, 2 localhostProfile",
    "Sysctl": "1 name, 2 value",
    "Toleration": "1 key, 2 operator, 3 value, 4 effect, 5 tolerationSeconds:int",
    "HostAlias": "1 ip, 2 hostnames[]",
    "PodDNSConfig": "1 nameservers[], 2 searches[], 3 options:PodDNSConfigOption[]",
    "PodDNSConfigOption": "1 name, 2 value",
    "PodReadinessGate": "1 conditionType",
    "Volume": "1 name, 2 _inline:VolumeSource",
    "VolumeSource": "1 hostPath:HostPathVolumeSource, 2 emptyDir:EmptyDirVolumeSource, 6 secret:SecretVolumeSource, "
                    "10 persistentVolumeClaim:PersistentVolumeClaimVolumeSource, "
                    "16 downwardAPI:DownwardAPIVolumeSource, 19 configMap:ConfigMapVolumeSource, "
                    "26 projected:ProjectedVolumeSource",
    "HostPathVolumeSource": "1 path, 2 type",
    "EmptyDirVolumeSource": "1 medium, 2 sizeLimit:Quantity",
    "SecretVolumeSource": "1 secretName, 2 items:KeyToPath[], 3 defaultMode:int, 4 optional:bool",
    "ConfigMapVolumeSource": "1 _inline:LocalObjectReference, 2 items:KeyToPath[], 3 defaultMode:int, "
                             "4 optional:bool",
    "KeyToPath": "1 key, 2 path, 3 mode:int",
    "PersistentVolumeClaimVolumeSource": "1 claimName, 2 readOnly:bool",
    "DownwardAPIVolumeSource": "1 items:DownwardAPIVolumeFile[], 2 defaultMode:int",
    "DownwardAPIVolumeFile": "1 path, 2 fieldRef:ObjectFieldSelector, 3 resourceFieldRef:ResourceFieldSelector, "
                             "4 mode:int",
    "ProjectedVolumeSource": "1 sources:VolumeProjection[], 2 defaultMode:int",
    "VolumeProjection": "1 secret:ProjectionSource, 2 downwardAPI:DownwardAPIProjection, "
                        "3 configMap:ProjectionSource, 4 serviceAccountToken:ServiceAccountTokenProjection",
    # SecretProjection and ConfigMapProjection: the same fields
    "ProjectionSource": "1 _inline:LocalObjectReference, 2 items:KeyToPath[], 4 optional:bool",
    "DownwardAPIProjection": "1 items:DownwardAPIVolumeFile[]",
    "ServiceAccountTokenProjection": "1 audience, 2 expirationSeconds:int, 3 path",
    "Empty": "",  # status: clients send it empty on create; its contents are the server's anyway
    # rbac.authorization.k8s.io/v1 (kubectl create role|clusterrole|rolebinding|clusterrolebinding)
    "PolicyRule": "1 verbs[], 2 apiGroups[], 3 resources[], 4 resourceNames[], 5 nonResourceURLs[]",
    "Role": "1 metadata:ObjectMeta, 2 rules:PolicyRule[]",
    "ClusterRole": "1 metadata:ObjectMeta, 2 rules:PolicyRule[]",
    "Subject": "1 kind, 2 apiGroup, 3 name, 4 namespace",
    "RoleRef": "1 apiGroup, 2 kind, 3 name",
    "RoleBinding": "1 metadata:ObjectMeta, 2 subjects:Subject[], 3 roleRef:RoleRef",
    "ClusterRoleBinding": "1 metadata:ObjectMeta, 2 subjects:Subject[], 3 roleRef:RoleRef",
    # authorization.k8s.io/v1 (kubectl auth can-i)
    "ResourceAttributes": "1 namespace, 2 verb, 3 group, 4 version, 5 resource, 6 subresource, 7 name",
    "NonResourceAttributes": "1 path, 2 verb",
    "SelfSubjectAccessReview": "1 metadata:ObjectMeta, 2 spec:SelfSubjectAccessReviewSpec, 3 status:Empty",
    "SelfSubjectAccessReviewSpec": "1 resourceAttributes:ResourceAttributes, "
                                   "2 nonResourceAttributes:NonResourceAttributes",
    "SubjectAccessReview": "1 metadata:ObjectMeta, 2 spec:SubjectAccessReviewSpec, 3 status:Empty",
    "SubjectAccessReviewSpec": "1 resourceAttributes:ResourceAttributes, "
                               "2 nonResourceAttributes:NonResourceAttributes, 3 user, 4 groups[], 6 uid",
    "SelfSubjectRulesReview": "1 metadata:ObjectMeta, 2 spec:SelfSubjectRulesReviewSpec, 3 status:Empty",
    "SelfSubjectRulesReviewSpec": "1 namespace",
    "PodDisruptionBudget": "1 metadata:ObjectMeta, 2 spec:PodDisruptionBudgetSpec, 3 status:Empty",
    "PodDisruptionBudgetSpec": "1 minAvailable:IntOrString, 2 selector:LabelSelector, 3 maxUnavailable:IntOrString, "
                               "4 unhealthyPodEvictionPolicy",
    # kubectl create quota (core/v1 ResourceQuota)
    "ResourceQuota": "1 metadata:ObjectMeta, 2 spec:ResourceQuotaSpec, 3 status:Empty",
    "ResourceQuotaSpec": "1 hard:map:Quantity, 2 scopes[], 3 scopeSelector:ScopeSelector",
    "ScopeSelector": "1 matchExpressions:ScopedResourceSelectorRequirement[]",
    "ScopedResourceSelectorRequirement": "1 scopeName, 2 operator, 3 values[]",
    # kubectl drain's evictions (policy/v1 Eviction).
    "Eviction": "1 metadata:ObjectMeta, 2 deleteOptions:DeleteOptions",
    "DeleteOptions": "1 gracePeriodSeconds:int, 2 preconditions:Preconditions, 3 orphanDependents:bool, "
                     "4 propagationPolicy, 5 dryRun[]",
    "Preconditions": "1 uid, 2 resourceVersion",
    # authentication.k8s.io/v1 (kubectl create token, kubectl auth whoami)
    "BoundObjectReference": "1 kind, 2 apiVersion, 3 name, 4 uid",
    "TokenRequestSpec": "1 audiences[], 3 boundObjectRef:BoundObjectReference, 4 expirationSeconds:int",
    "TokenRequest": "1 metadata:ObjectMeta, 2 spec:TokenRequestSpec, 3 status:Empty",
    "TokenReviewSpec": "1 token, 2 audiences[]",
    "TokenReview": "1 metadata:ObjectMeta, 2 spec:TokenReviewSpec, 3 status:Empty",
    "SelfSubjectReview": "1 metadata:ObjectMeta, 2 status:Empty",
    # networking.k8s.io/v1 (kubectl create ingress); a rule's IngressRuleValue is inlined in JSON (`http`).
    "Ingress": "1 metadata:ObjectMeta, 2 spec:IngressSpec, 3 status:Empty",
    "IngressSpec": "1 defaultBackend:IngressBackend, 2 tls:IngressTLS[], 3 rules:IngressRule[], 4 ingressClassName",
    "IngressBackend": "3 resource:TypedLocalObjectReference, 4 service:IngressServiceBackend",
    "IngressServiceBackend": "1 name, 2 port:ServiceBackendPort",
    "ServiceBackendPort": "1 name, 2 number:int",
    "TypedLocalObjectReference": "1 apiGroup, 2 kind, 3 name",
    "IngressTLS": "1 hosts[], 2 secretName",
    "IngressRule": "1 host, 2 _inline:IngressRuleValue",
    "IngressRuleValue": "1 http:HTTPIngressRuleValue",
    "HTTPIngressRuleValue": "1 paths:HTTPIngressPath[]",
    "HTTPIngressPath": "1 path, 2 backend:IngressBackend, 3 pathType",
}
INLINE = "_inline"  # a field Go embeds with `json:",inline"`: its fields are the parent's in JSON


def _parse_fields(spec: str) -> dict[int, F]:
    fields: dict[int, F] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        number, field = item.split(" ")
        repeated = field.endswith("[]")
        name, _, kind = field.removesuffix("[]").partition(":")
        fields[int(number)] = (name, kind or "string", repeated)
    return fields


MESSAGES: dict[str, dict[int, F]] = {message: _parse_fields(spec) for message, spec in _SCHEMA.items()}
TOP_LEVEL = ("Pod", "DeleteOptions", "Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Deployment", "Job", "CronJob", "Role",
             "ClusterRole",
             "RoleBinding", "ClusterRoleBinding", "SelfSubjectAccessReview", "SubjectAccessReview",
             "SelfSubjectRulesReview", "PodDisruptionBudget", "ResourceQuota", "Eviction", "TokenRequest", "TokenReview",
             "SelfSubjectReview", "HorizontalPodAutoscaler", "CertificateSigningRequest",
             "Ingress")
# Kinds whose protobuf tables above are those of one version only.
_ONLY_VERSION = {"HorizontalPodAutoscaler": "autoscaling/v1"}
# Fields that are pointers in Go: a zero value was sent on purpose and is kept.
_KEEP_ZERO = {("DeploymentSpec", "replicas"), ("ServicePort", "port"),
              *(("JobSpec", f) for f in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                                        "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes")),
              *(("CronJobSpec", f) for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit",
                                            "failedJobsHistoryLimit")),
              ("DeleteOptions", "gracePeriodSeconds"), ("DeleteOptions", "orphanDependents"), ("PodDisruptionBudgetSpec", "minAvailable"),
              ("PodDisruptionBudgetSpec", "maxUnavailable"), ("HorizontalPodAutoscalerSpec", "minReplicas"),
              ("HorizontalPodAutoscalerSpec", "targetCPUUtilizationPercentage"),
              *(("PodSpec", f) for f in ("terminationGracePeriodSeconds", "activeDeadlineSeconds", "priority",
                                        "automountServiceAccountToken", "shareProcessNamespace", "enableServiceLinks",
                                        "setHostnameAsFQDN", "hostUsers")),
              *(("SecurityContext", f) for f in ("privileged", "runAsUser", "runAsNonRoot", "readOnlyRootFilesystem",
                                                "allowPrivilegeEscalation", "runAsGroup")),
              *(("PodSecurityContext", f) for f in ("runAsUser", "runAsNonRoot", "fsGroup", "runAsGroup")),
              ("Toleration", "tolerationSeconds"), ("Probe", "terminationGracePeriodSeconds"), ("KeyToPath", "mode"),
              *((m, "defaultMode") for m in ("SecretVolumeSource", "ConfigMapVolumeSource", "DownwardAPIVolumeSource",
                                             "ProjectedVolumeSource")),
              *((m, "optional") for m in ("KeySelector", "EnvSource", "SecretVolumeSource", "ConfigMapVolumeSource",
                                          "ProjectionSource")),
              ("DownwardAPIVolumeFile", "mode"), ("ServiceAccountTokenProjection", "expirationSeconds")}


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


def _quantity(raw: bytes) -> str:
    return bytes({n: v for n, _, v in _fields(raw)}.get(1, b"")).decode()


def _map(raw_entries: list[bytes], value_kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in raw_entries:
        parts = {n: v for n, _, v in _fields(entry)}
        key = bytes(parts.get(1, b"")).decode()
        value = parts.get(2, b"")
        if value_kind == "Quantity":
            out[key] = _quantity(value)
        elif value_kind == "ExtraValue":  # a user's extra values: a list of strings in JSON
            out[key] = [bytes(v).decode() for n, _, v in _fields(value) if n == 1]
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
        elif kind == "Quantity":
            value = _quantity(raw)
        elif kind in MESSAGES:
            value = decode_message(kind, raw)
        else:
            value = _scalar(kind, raw)
        if name == INLINE:
            out.update(value)
        elif repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    for name, entries in map_entries.items():
        kind = next(k for n, k, _ in table.values() if n == name)
        out[name] = _map(entries, kind[4:])
    return {k: v for k, v in out.items()
            if not _is_zero(v) or (message, k) in _KEEP_ZERO and isinstance(v, int)}  # ints and bools


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
    if kind not in TOP_LEVEL or _ONLY_VERSION.get(kind, type_meta.get(1, "")) != type_meta.get(1, ""):
        raise unsupported(f'kind "{kind}" cannot be sent as protobuf to this server')
    obj = decode_message(kind, raw)
    return {"apiVersion": type_meta.get(1, ""), "kind": kind, **obj}
