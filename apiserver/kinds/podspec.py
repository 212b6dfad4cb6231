"""PodSpec defaulting and validation, shared by Pods and by workloads' pod templates.

Defaults follow k8s.io/kubernetes pkg/apis/core/v1/defaults.go; rules and messages follow
pkg/apis/core/validation (ValidatePodSpec and friends). Defaulting never trusts types:
it runs before validation and must leave malformed input for validation to report.
"""
from __future__ import annotations

from typing import Any

from pklib import validation as v
from pklib.quantity import QuantityError, parse_quantity

from .fields import (Cause, Path, duplicate, forbidden, invalid, non_negative, not_found, not_supported,
                     one_of, positive, required)
from .meta import as_dict, as_list, validate_labels

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
PROTOCOLS = ("TCP", "UDP", "SCTP")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
TOLERATION_OPERATORS = ("Exists", "Equal")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice")
VOLUME_SOURCES = ("emptyDir", "hostPath", "configMap", "secret", "persistentVolumeClaim", "projected",
                  "downwardAPI", "nfs", "csi", "ephemeral", "local", "image", "iscsi", "rbd", "cephfs", "fc")
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
# What an ephemeral container may not have (Kubernetes' validateEphemeralContainers): it is never restarted,
# never probed, reserves nothing and serves nothing.
EPHEMERAL_FORBIDDEN = ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "resources",
                       "resizePolicy")
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_FILE_MODE_SOURCES = ("secret", "configMap", "projected", "downwardAPI")
SECCOMP_TYPES = ("Localhost", "RuntimeDefault", "Unconfined")


# --- defaults ------------------------------------------------------------------------------

def default_pod_spec(spec: Any, *, is_pod: bool) -> None:
    """Fill in what users omit. `is_pod` adds the Pod-only rule requests := limits."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for field in CONTAINER_LISTS:
        for c in as_list(spec.get(field)):
            if isinstance(c, dict):
                _default_container(c, is_pod=is_pod)
    for vol in as_list(spec.get("volumes")):
        if isinstance(vol, dict):
            _default_volume(vol)


def pull_policy_for(image: str) -> str:
    """Always for `:latest` or an untagged image, IfNotPresent otherwise (digests count as tags)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_container(c: dict[str, Any], *, is_pod: bool) -> None:
    if isinstance(c.get("image"), str):
        c.setdefault("imagePullPolicy", pull_policy_for(c["image"]))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    for port in as_list(c.get("ports")):
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in as_list(c.get("env")):
        field_ref = as_dict(as_dict(as_dict(env).get("valueFrom")).get("fieldRef"))
        if field_ref:
            field_ref.setdefault("apiVersion", "v1")
    for name in _PROBES:
        probe = c.get(name)
        if isinstance(probe, dict):
            _default_probe(probe)
    resources = c.get("resources")
    if is_pod and isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        # A Pod that only states limits requests exactly that much (Guaranteed QoS).
        requests = resources.setdefault("requests", {})
        if isinstance(requests, dict):
            for name, value in resources["limits"].items():
                requests.setdefault(name, value)


def _default_probe(probe: dict[str, Any]) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")


def _default_volume(vol: dict[str, Any]) -> None:
    if not any(src in vol for src in VOLUME_SOURCES):
        vol["emptyDir"] = {}
    for src in _FILE_MODE_SOURCES:
        if isinstance(vol.get(src), dict):
            vol[src].setdefault("defaultMode", 0o644)


# --- validation ----------------------------------------------------------------------------

def validate_pod_spec(spec: dict[str, Any], path: Path, extra_volume_names: frozenset[str] = frozenset()
                      ) -> list[Cause]:
    """Semantic rules of a PodSpec whose structure the schema already accepted.

    extra_volume_names: volumes the pod will get from elsewhere (a StatefulSet's volumeClaimTemplates)."""
    causes: list[Cause] = []
    volumes = as_list(spec.get("volumes"))
    volume_names = {as_dict(vol).get("name") for vol in volumes} | extra_volume_names
    causes += _validate_volumes(volumes, path.child("volumes"))
    if not as_list(spec.get("containers")):
        causes.append(required(path.child("containers")))
    seen: set[str] = set()
    for field in CONTAINER_LISTS:
        for i, c in enumerate(as_list(spec.get(field))):
            p = path.child(field).index(i)
            name = c.get("name", "")
            if name in seen:
                causes.append(duplicate(p.child("name"), name))
            seen.add(name)
            causes += _validate_container(c, p, volume_names, spec.get("hostNetwork") is True,
                                          needs_image=field != "ephemeralContainers")
            if field == "ephemeralContainers":
                causes += _validate_ephemeral(c, p, spec)
            if "restartPolicy" in c:  # only init containers may be sidecars ("Always")
                if field == "initContainers":
                    causes += one_of(p.child("restartPolicy"), c["restartPolicy"], ("Always",))
                else:
                    causes.append(forbidden(p.child("restartPolicy"), "may not be set for non-init containers"))
    causes += one_of(path.child("restartPolicy"), spec.get("restartPolicy"), RESTART_POLICIES)
    causes += one_of(path.child("dnsPolicy"), spec.get("dnsPolicy"), DNS_POLICIES)
    causes += non_negative(path.child("terminationGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds"))
    causes += positive(path.child("activeDeadlineSeconds"), spec.get("activeDeadlineSeconds"))
    causes += validate_labels(spec.get("nodeSelector"), path.child("nodeSelector"))
    if spec.get("nodeName"):
        node = spec["nodeName"]
        causes += [invalid(path.child("nodeName"), node, e) for e in v.is_dns1123_subdomain(node)]
    for field in ("hostname", "subdomain"):
        if spec.get(field):
            causes += [invalid(path.child(field), spec[field], e) for e in v.is_dns1123_label(spec[field])]
    if spec.get("serviceAccountName"):
        name = spec["serviceAccountName"]
        causes += [invalid(path.child("serviceAccountName"), name, e) for e in v.is_dns1123_subdomain(name)]
    for i, t in enumerate(as_list(spec.get("tolerations"))):
        causes += _validate_toleration(t, path.child("tolerations").index(i))
    if spec.get("shareProcessNamespace") is True and spec.get("hostPID") is True:
        # Kubernetes' path: its internal type keeps both fields in the pod's security context
        causes.append(invalid(path.child("securityContext").child("shareProcessNamespace"), True,
                              "ShareProcessNamespace and HostPID cannot both be enabled"))
    psc = spec.get("securityContext")
    if isinstance(psc, dict) and "seccompProfile" in psc:
        causes += _validate_seccomp(psc["seccompProfile"], path.child("securityContext").child("seccompProfile"))
    return causes


def _validate_seccomp(sp: Any, path: Path) -> list[Cause]:
    """Kubernetes' validateSeccompProfileField."""
    if not isinstance(sp, dict):
        return [invalid(path, sp, "must be an object")]
    kind, local = sp.get("type"), sp.get("localhostProfile")
    if not kind:
        return [required(path.child("type"))]
    if kind not in SECCOMP_TYPES:
        return [not_supported(path.child("type"), kind, SECCOMP_TYPES)]
    lp = path.child("localhostProfile")
    if kind != "Localhost":
        return [invalid(lp, local, "can only be set when seccomp type is Localhost")] if local is not None else []
    if not local:
        return [required(lp, "must be set when seccomp type is Localhost")]
    if not isinstance(local, str):
        return [invalid(lp, local, "must be a string")]
    causes = []
    if local.startswith("/"):
        causes.append(invalid(lp, local, "must be a relative path"))
    if ".." in local.split("/"):
        causes.append(invalid(lp, local, "must not contain '..'"))
    return causes


def _validate_container_security(sc: Any, path: Path) -> list[Cause]:
    if not isinstance(sc, dict):
        return []
    causes: list[Cause] = []
    if "seccompProfile" in sc:
        causes += _validate_seccomp(sc["seccompProfile"], path.child("seccompProfile"))
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged") is True:
            causes.append(invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
        added = as_list(as_dict(sc.get("capabilities")).get("add"))
        if "SYS_ADMIN" in added or "CAP_SYS_ADMIN" in added:
            causes.append(invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` "
                                            "CAP_SYS_ADMIN"))
    return causes


def _validate_ephemeral(c: dict[str, Any], path: Path, spec: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    if not c.get("image"):
        causes.append(required(path.child("image")))
    for field in EPHEMERAL_FORBIDDEN:
        if c.get(field):
            causes.append(forbidden(path.child(field), "cannot be set for an Ephemeral Container"))
    target = c.get("targetContainerName")
    if target and target not in {x.get("name") for f in ("initContainers", "containers")
                                 for x in as_list(spec.get(f)) if isinstance(x, dict)}:
        causes.append(not_found(path.child("targetContainerName"), target))
    return causes


def _validate_container(c: dict[str, Any], path: Path, volume_names: set[Any], host_network: bool, *,
                        needs_image: bool) -> list[Cause]:
    causes: list[Cause] = []
    name = c.get("name", "")
    causes += [invalid(path.child("name"), name, e) for e in v.is_dns1123_label(name)]
    if needs_image and not c.get("image"):
        causes.append(required(path.child("image")))
    causes += one_of(path.child("imagePullPolicy"), c.get("imagePullPolicy"), PULL_POLICIES)
    causes += one_of(path.child("terminationMessagePolicy"), c.get("terminationMessagePolicy"), MESSAGE_POLICIES)
    causes += _validate_ports(as_list(c.get("ports")), path.child("ports"), host_network)
    causes += _validate_env(as_list(c.get("env")), path.child("env"))
    causes += validate_resources(as_dict(c.get("resources")), path.child("resources"))
    mount_paths: set[str] = set()
    for i, m in enumerate(as_list(c.get("volumeMounts"))):
        p = path.child("volumeMounts").index(i)
        if m["name"] not in volume_names:
            causes.append(not_found(p.child("name"), m["name"]))
        if not m["mountPath"]:
            causes.append(required(p.child("mountPath")))
        elif m["mountPath"] in mount_paths:
            causes.append(invalid(p.child("mountPath"), m["mountPath"], "must be unique"))
        mount_paths.add(m["mountPath"])
    causes += _validate_container_security(c.get("securityContext"), path.child("securityContext"))
    for probe in _PROBES:
        if isinstance(c.get(probe), dict):
            causes += _validate_probe(c[probe], path.child(probe), must_succeed_once=probe != "readinessProbe")
    return causes


def _validate_ports(ports: list[Any], path: Path, host_network: bool) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = path.index(i)
        if port.get("name"):
            causes += [invalid(p.child("name"), port["name"], e) for e in v.is_valid_port_name(port["name"])]
            if port["name"] in names:
                causes.append(duplicate(p.child("name"), port["name"]))
            names.add(port["name"])
        cp = port["containerPort"]
        causes += [invalid(p.child("containerPort"), cp, e) for e in v.is_valid_port_num(cp)]
        host = port.get("hostPort")
        if host:
            causes += [invalid(p.child("hostPort"), host, e) for e in v.is_valid_port_num(host)]
            if host_network and host != cp:
                causes.append(invalid(p.child("hostPort"), host, "must match `containerPort` when `hostNetwork` "
                                                                  "is true"))
        causes += one_of(p.child("protocol"), port.get("protocol"), PROTOCOLS)
    return causes


def _validate_env(env: list[Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for i, e in enumerate(env):
        p = path.index(i)
        causes += [invalid(p.child("name"), e["name"], m) for m in v.is_env_var_name(e["name"])]
        if e.get("value") and e.get("valueFrom"):
            causes.append(invalid(p.child("valueFrom"), "", "may not be specified when `value` is not empty"))
    return causes


def _resource_name_ok(name: str) -> bool:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return True
    return "/" in name and not v.is_qualified_name(name)


def validate_resources(resources: dict[str, Any], path: Path) -> list[Cause]:
    """Quantities parse and are >= 0, names are known or qualified, requests <= limits."""
    causes: list[Cause] = []
    parsed: dict[str, dict[str, Any]] = {"limits": {}, "requests": {}}
    for section in ("limits", "requests"):
        for name, raw in as_dict(resources.get(section)).items():
            p = path.child(section).key(name)
            if not _resource_name_ok(name):
                causes.append(invalid(p, name, "must be a standard resource type or fully qualified"))
                continue
            try:
                q = parse_quantity(raw)
            except QuantityError as e:
                causes.append(invalid(p, raw, str(e)))
                continue
            if q.value < 0:
                causes.append(invalid(p, raw, "must be greater than or equal to 0"))
                continue
            parsed[section][name] = q
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and req.value > lim.value:
            causes.append(invalid(path.child("requests").key(name), str(req),
                                  f"must be less than or equal to {name} limit of {lim}"))
    return causes


def _validate_probe(probe: dict[str, Any], path: Path, *, must_succeed_once: bool) -> list[Cause]:
    causes: list[Cause] = []
    handlers = [h for h in _PROBE_HANDLERS if probe.get(h) is not None]
    if not handlers:
        causes.append(required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        causes.append(forbidden(path.child(handlers[1]), "may not specify more than 1 handler type"))
    for field in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        causes += non_negative(path.child(field), probe.get(field))
    if must_succeed_once and probe.get("successThreshold", 1) != 1:
        causes.append(invalid(path.child("successThreshold"), probe["successThreshold"], "must be 1"))
    for handler in ("httpGet", "tcpSocket"):
        action = as_dict(probe.get(handler))
        if "port" in action:
            causes += validate_port_ref(action["port"], path.child(handler).child("port"))
    http = as_dict(probe.get("httpGet"))
    causes += one_of(path.child("httpGet").child("scheme"), http.get("scheme"), ("HTTP", "HTTPS"))
    return causes


def validate_port_ref(port: Any, path: Path) -> list[Cause]:
    """An int-or-string port: a number in range or an IANA port name."""
    if isinstance(port, str):
        return [invalid(path, port, e) for e in v.is_valid_port_name(port)]
    return [invalid(path, port, e) for e in v.is_valid_port_num(port)]


def _validate_volumes(volumes: list[Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        p = path.index(i)
        name = vol["name"]
        causes += [invalid(p.child("name"), name, e) for e in v.is_dns1123_label(name)]
        if name in names:
            causes.append(duplicate(p.child("name"), name))
        names.add(name)
        sources = [s for s in VOLUME_SOURCES if vol.get(s) is not None]
        if not sources:
            causes.append(required(p, "must specify a volume type"))
        for extra in sources[1:]:
            causes.append(forbidden(p.child(extra), "may not specify more than 1 volume type"))
        src = as_dict(vol.get(sources[0])) if sources else {}
        if sources and sources[0] == "configMap" and not src.get("name"):
            causes.append(required(p.child("configMap").child("name")))
        if sources and sources[0] == "secret" and not src.get("secretName"):
            causes.append(required(p.child("secret").child("secretName")))
        if sources and sources[0] == "persistentVolumeClaim" and not src.get("claimName"):
            causes.append(required(p.child("persistentVolumeClaim").child("claimName")))
        if sources and sources[0] == "hostPath":
            causes += one_of(p.child("hostPath").child("type"), src.get("type"), HOST_PATH_TYPES)
            if not str(src.get("path", "")).startswith("/"):
                causes.append(invalid(p.child("hostPath").child("path"), src.get("path"), "must be an absolute path"))
        if sources and sources[0] in _FILE_MODE_SOURCES:
            causes += _validate_file_modes(sources[0], src, p.child(sources[0]))
    return causes


FILE_MODE_MESSAGE = "must be a number between 0 and 0777 (octal), both inclusive"


def _file_mode(mode: Any, path: Path) -> list[Cause]:
    if mode is None:
        return []
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        return [invalid(path, mode, FILE_MODE_MESSAGE)]
    return []


def _validate_items(items: list[Any], path: Path) -> list[Cause]:
    """Kubernetes' KeyToPath / DownwardAPIVolumeFile rules: `mode` within 0777, `path` a local descending path."""
    causes: list[Cause] = []
    for j, item in enumerate(items):
        item = as_dict(item)
        p = path.index(j)
        causes += _file_mode(item.get("mode"), p.child("mode"))
        rel = item.get("path")
        if not isinstance(rel, str) or not rel:
            causes.append(required(p.child("path")))
        elif rel.startswith("/"):
            causes.append(invalid(p.child("path"), rel, "must be a relative path"))
        elif ".." in rel.split("/"):
            causes.append(invalid(p.child("path"), rel, "must not contain '..'"))
        elif rel.startswith(".."):
            causes.append(invalid(p.child("path"), rel, "must not start with '..'"))
    return causes


def _validate_file_modes(kind: str, src: dict[str, Any], path: Path) -> list[Cause]:
    """defaultMode and items of a configMap, secret, downwardAPI or projected volume."""
    causes = _file_mode(src.get("defaultMode"), path.child("defaultMode"))
    if kind != "projected":
        return causes + _validate_items(as_list(src.get("items")), path.child("items"))
    for k, source in enumerate(as_list(src.get("sources"))):
        for sub in ("configMap", "secret", "downwardAPI"):
            if isinstance(as_dict(source).get(sub), dict):
                causes += _validate_items(as_list(source[sub].get("items")),
                                          path.child("sources").index(k).child(sub).child("items"))
    return causes


def _validate_toleration(t: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    op = t.get("operator", "Equal")
    if op not in TOLERATION_OPERATORS:
        return [not_supported(path.child("operator"), op, TOLERATION_OPERATORS)]
    if not t.get("key") and op != "Exists":
        causes.append(invalid(path.child("operator"), op, 'operator must be Exists when `key` is empty, which means '
                                                          '"match all values and all keys"'))
    if t.get("key"):
        causes += [invalid(path.child("key"), t["key"], e) for e in v.is_qualified_name(t["key"])]
    if op == "Exists" and t.get("value"):
        causes.append(invalid(path.child("operator"), op, "value must be empty when `operator` is 'Exists'"))
    if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
        causes.append(invalid(path.child("effect"), t.get("effect", ""),
                              "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    if t.get("effect"):
        causes += one_of(path.child("effect"), t["effect"], TAINT_EFFECTS)
    return causes
