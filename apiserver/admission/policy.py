"""The Pod Security Standards as pure checks (Kubernetes' k8s.io/pod-security-admission/policy).

`evaluate(level, meta, spec)` runs the checks of a level over a pod (or a pod template) and gives the
violations in Kubernetes' order and words; `forbidden_detail` / `forbidden_reason` join them the way
Kubernetes prints them ("privileged (container "c" must not set securityContext.privileged=true), ...").
Every check is the one of the newest policy version: `v1.x` versions are accepted and evaluated like `latest`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)


class Violation(NamedTuple):
    reason: str
    detail: str


Check = Callable[[dict[str, Any], dict[str, Any]], "Violation | None"]

_BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
_SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"})
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"})
_VOLUME_META = frozenset({"name"})
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


# -- helpers ---------------------------------------------------------------------------------------------

def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Init, regular and ephemeral containers, in Kubernetes' visiting order."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in _list(spec.get(field)):
            if isinstance(c, dict):
                yield c


def _sc(c: dict[str, Any]) -> dict[str, Any]:
    return _dict(c.get("securityContext"))


def _pod_sc(spec: dict[str, Any]) -> dict[str, Any]:
    return _dict(spec.get("securityContext"))


def quote(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def plural(one: str, many: str, n: int) -> str:
    return one if n == 1 else many


def _named(one: str, many: str, names: list[str]) -> str:
    return f"{plural(one, many, len(names))} {quote(names)}"


def _names_where(spec: dict[str, Any], test: Callable[[dict[str, Any]], bool]) -> list[str]:
    """The names of the containers whose securityContext passes `test` (a forbidden setting)."""
    return [c.get("name", "") for c in containers(spec) if test(_sc(c))]


def _containers_must(spec: dict[str, Any], test: Callable[[dict[str, Any]], bool], check: str,
                     rule: str) -> Violation | None:
    """A check of each container's own securityContext: the containers `test` finds must `rule`."""
    names = _names_where(spec, test)
    return Violation(check, f'{_named("container", "containers", names)} must {rule}') if names else None


def _pod_or_containers_must_not(spec: dict[str, Any], test: Callable[[dict[str, Any]], bool], check: str,
                                setting: str) -> Violation | None:
    """A check of the pod's securityContext and each container's: whoever `test` finds must not set `setting`."""
    pod_bad, names = test(_pod_sc(spec)), _names_where(spec, test)
    if pod_bad or names:
        return Violation(check, f"{_setters(pod_bad, names)} must not set {setting}")
    return None


def _setters(pod_bad: bool, bad_containers: list[str]) -> str:
    """"pod", "container "a"", "pod and containers "a", "b"" as Kubernetes names who set a bad value."""
    parts = ["pod"] if pod_bad else []
    if bad_containers:
        parts.append(_named("container", "containers", bad_containers))
    return " and ".join(parts)


# -- baseline ----------------------------------------------------------------------------------------------

def app_armor(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    bad: list[str] = []
    for key, value in sorted(_dict(meta.get("annotations")).items()):
        if key.startswith(APPARMOR_PREFIX) and value not in ("", "runtime/default") \
                and not str(value).startswith("localhost/"):
            bad.append(f"{key}={value}")
    pod_profile = _dict(_pod_sc(spec).get("appArmorProfile")).get("type")
    if pod_profile == "Unconfined":
        bad.append('pod must not set securityContext.appArmorProfile.type to "Unconfined"')
    names = [c.get("name", "") for c in containers(spec)
             if _dict(_sc(c).get("appArmorProfile")).get("type") == "Unconfined"]
    if names:
        bad.append(f'{_named("container", "containers", names)} must not set '
                   'securityContext.appArmorProfile.type to "Unconfined"')
    if bad:
        return Violation(plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(bad)), ", ".join(bad))
    return None


def capabilities_baseline(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    names: list[str] = []
    caps: set[str] = set()
    for c in containers(spec):
        extra = {str(a) for a in _list(_dict(_sc(c).get("capabilities")).get("add"))} - _BASELINE_CAPABILITIES
        if extra:
            names.append(c.get("name", ""))
            caps |= extra
    if names:
        return Violation("non-default capabilities", f'{_named("container", "containers", names)} must not include '
                                                     f"{quote(sorted(caps))} in securityContext.capabilities.add")
    return None


def host_namespaces(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    # in Kubernetes' order (check_hostNamespaces.go), not sorted
    used = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True]
    return Violation("host namespaces", ", ".join(used)) if used else None


def host_path_volumes(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    names = [v.get("name", "") for v in _list(spec.get("volumes")) if isinstance(v, dict) and "hostPath" in v]
    return Violation("hostPath volumes", _named("volume", "volumes", names)) if names else None


def host_ports(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    names: list[str] = []
    ports: list[str] = []
    for c in containers(spec):
        mine = [str(p["hostPort"]) for p in _list(c.get("ports")) if isinstance(p, dict) and p.get("hostPort")]
        if mine:
            names.append(c.get("name", ""))
            ports += [p for p in mine if p not in ports]
    if names:
        uses = plural("uses", "use", len(names))
        return Violation("hostPort", f'{_named("container", "containers", names)} {uses} '
                                     f'{plural("hostPort", "hostPorts", len(ports))} {", ".join(ports)}')
    return None


def privileged(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    return _containers_must(spec, lambda sc: sc.get("privileged") is True, "privileged",
                            "not set securityContext.privileged=true")


def proc_mount(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    names: list[str] = []
    kinds: list[str] = []
    for c in containers(spec):
        mount = _sc(c).get("procMount")
        if mount not in (None, "Default"):
            names.append(c.get("name", ""))
            kinds += [str(mount)] if str(mount) not in kinds else []
    if names:
        return Violation("procMount", f'{_named("container", "containers", names)} must not set '
                                      f"securityContext.procMount to {quote(kinds)}")
    return None


def se_linux_options(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    bad_types: set[str] = set()
    bad_users: set[str] = set()
    bad_roles: set[str] = set()

    def bad(options: Any) -> bool:
        o = _dict(options)
        found = False
        if str(o.get("type") or "") not in _SELINUX_TYPES:
            bad_types.add(str(o["type"]))
            found = True
        for key, into in (("user", bad_users), ("role", bad_roles)):
            if o.get(key):
                into.add(str(o[key]))
                found = True
        return found

    pod_bad = bad(_pod_sc(spec).get("seLinuxOptions"))
    names = [c.get("name", "") for c in containers(spec) if bad(_sc(c).get("seLinuxOptions"))]
    if not pod_bad and not names:
        return None
    what = [f"{field} {quote(sorted(values))}" for field, values in
            (("type", bad_types), ("user", bad_users), ("role", bad_roles)) if values]
    return Violation("seLinuxOptions", f"{_setters(pod_bad, names)} set forbidden securityContext.seLinuxOptions: "
                                       + "; ".join(what))


def seccomp_baseline(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    return _pod_or_containers_must_not(spec, lambda sc: _dict(sc.get("seccompProfile")).get("type") == "Unconfined",
                                       "seccompProfile", 'securityContext.seccompProfile.type to "Unconfined"')


def sysctls(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    bad = [str(s.get("name")) for s in _list(_pod_sc(spec).get("sysctls"))
           if isinstance(s, dict) and s.get("name") not in _SAFE_SYSCTLS]
    return Violation("forbidden sysctls", ", ".join(bad)) if bad else None


def host_process(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    return _pod_or_containers_must_not(spec, lambda sc: _dict(sc.get("windowsOptions")).get("hostProcess") is True,
                                       "hostProcess", "securityContext.windowsOptions.hostProcess=true")


# -- restricted --------------------------------------------------------------------------------------------

def allow_privilege_escalation(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    return _containers_must(spec, lambda sc: sc.get("allowPrivilegeEscalation") is not False,
                            "allowPrivilegeEscalation != false", "set securityContext.allowPrivilegeEscalation=false")


def capabilities_restricted(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    no_drop: list[str] = []
    adders: list[str] = []
    added: set[str] = set()
    for c in containers(spec):
        caps = _dict(_sc(c).get("capabilities"))
        if "ALL" not in [str(d) for d in _list(caps.get("drop"))]:
            no_drop.append(c.get("name", ""))
        extra = {str(a) for a in _list(caps.get("add"))} - {"NET_BIND_SERVICE"}
        if extra:
            adders.append(c.get("name", ""))
            added |= extra
    parts = []
    if no_drop:
        parts.append(f'{_named("container", "containers", no_drop)} must set '
                     'securityContext.capabilities.drop=["ALL"]')
    if adders:
        parts.append(f'{_named("container", "containers", adders)} must not include {quote(sorted(added))} in '
                     "securityContext.capabilities.add")
    return Violation("unrestricted capabilities", "; ".join(parts)) if parts else None


def restricted_volumes(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    names: list[str] = []
    types: set[str] = set()
    for v in _list(spec.get("volumes")):
        if not isinstance(v, dict):
            continue
        sources = [k for k in v if k not in _VOLUME_META]
        bad = [k for k in sources if k not in _RESTRICTED_VOLUMES]
        if bad or not sources:
            names.append(v.get("name", ""))
            types |= set(bad) if bad else {"unknown"}
    if names:
        use = plural("uses", "use", len(names))
        kind = plural("restricted volume type", "restricted volume types", len(types))
        return Violation("restricted volume types", f'{_named("volume", "volumes", names)} {use} {kind} '
                                                    f"{quote(sorted(types))}")
    return None


def _pod_then_containers(spec: dict[str, Any], field: str, good: Callable[[Any], bool],
                         ) -> tuple[bool, bool, list[str], list[str]]:
    """(pod set a bad value, pod set a good value, containers with a bad value, containers left unset)."""
    pod_value = _pod_sc(spec).get(field)
    pod_bad = pod_value is not None and not good(pod_value)
    pod_good = pod_value is not None and good(pod_value)
    bad: list[str] = []
    unset: list[str] = []
    for c in containers(spec):
        value = _sc(c).get(field)
        if value is None:
            unset.append(c.get("name", ""))
        elif not good(value):
            bad.append(c.get("name", ""))
    return pod_bad, pod_good, bad, unset


def run_as_non_root(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    pod_bad, pod_good, bad, unset = _pod_then_containers(spec, "runAsNonRoot", lambda v: v is True)
    if pod_bad or bad:
        return Violation("runAsNonRoot != true", f"{_setters(pod_bad, bad)} must not set "
                                                 "securityContext.runAsNonRoot=false")
    if unset and not pod_good:
        return Violation("runAsNonRoot != true", f'pod or {_named("container", "containers", unset)} must set '
                                                 "securityContext.runAsNonRoot=true")
    return None


def run_as_user(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    pod_bad, _, bad, _ = _pod_then_containers(spec, "runAsUser", lambda v: v != 0)
    if pod_bad or bad:
        return Violation("runAsUser=0", f"{_setters(pod_bad, bad)} must not set runAsUser=0")
    return None


def seccomp_restricted(meta: dict[str, Any], spec: dict[str, Any]) -> Violation | None:
    def good(profile: Any) -> bool:
        return _dict(profile).get("type") in ("RuntimeDefault", "Localhost")

    pod_bad, pod_good, bad, unset = _pod_then_containers(spec, "seccompProfile", good)
    if pod_bad or bad:
        values = {str(_dict(_pod_sc(spec).get("seccompProfile")).get("type"))} if pod_bad else set()
        values |= {str(_dict(_sc(c).get("seccompProfile")).get("type")) for c in containers(spec)
                   if c.get("name", "") in bad}
        return Violation("seccompProfile", f"{_setters(pod_bad, bad)} must not set "
                                           f"securityContext.seccompProfile.type to {quote(sorted(values))}")
    if unset and not pod_good:
        return Violation("seccompProfile", f'pod or {_named("container", "containers", unset)} must set '
                                           'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')
    return None


# Kubernetes' order: baseline checks, then restricted ones; a restricted check replaces the baseline one it
# tightens (restricted volume types for hostPath volumes, and so on).
BASELINE_CHECKS: tuple[Check, ...] = (
    app_armor, capabilities_baseline, host_namespaces, host_path_volumes, host_ports, privileged, proc_mount,
    se_linux_options, seccomp_baseline, sysctls, host_process)
_REPLACED = {host_path_volumes: restricted_volumes, capabilities_baseline: capabilities_restricted,
             seccomp_baseline: seccomp_restricted}
RESTRICTED_CHECKS: tuple[Check, ...] = (
    *(c for c in BASELINE_CHECKS if c not in _REPLACED), allow_privilege_escalation, capabilities_restricted,
    restricted_volumes, run_as_non_root, run_as_user, seccomp_restricted)


def evaluate(level: str, meta: dict[str, Any], spec: dict[str, Any]) -> list[Violation]:
    """What a pod (its metadata and spec) does that `level` forbids; [] when it is allowed."""
    checks = {PRIVILEGED: (), BASELINE: BASELINE_CHECKS, RESTRICTED: RESTRICTED_CHECKS}[level]
    meta, spec = _dict(meta), _dict(spec)
    if level == RESTRICTED and _dict(spec.get("os")).get("name") == "windows":
        checks = BASELINE_CHECKS  # Kubernetes skips the Linux-only restricted checks for Windows pods
    return [v for v in (check(meta, spec) for check in checks) if v is not None]


def forbidden_detail(violations: list[Violation]) -> str:
    return ", ".join(f"{v.reason} ({v.detail})" if v.detail else v.reason for v in violations)


def forbidden_reason(violations: list[Violation]) -> str:
    return ", ".join(v.reason for v in violations)
