"""Pod Security Standards: the checks of each level (cases after Kubernetes' policy/check_*_test.go fixtures),
namespace label parsing, and what the admission hook refuses, warns about and lets through."""
from __future__ import annotations

from typing import Any

import pytest

from apiserver.admission import podsecurity, policy
from apiserver.admission.podsecurity import LevelVersion, PodSecurity, policy_for
from apiserver.main import parse_args
from apiserver.status import StatusError


def spec(*containers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"containers": list(containers) or [{"name": "a"}], **fields}


def c(name: str = "a", **sc: Any) -> dict[str, Any]:
    return {"name": name, "securityContext": sc} if sc else {"name": name}


def detail(level: str, s: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    return policy.forbidden_detail(policy.evaluate(level, meta or {}, s))


RESTRICTED_OK = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                 "seccompProfile": {"type": "RuntimeDefault"}}

BASELINE_CASES = [
    # (spec, expected forbidden detail; "" = allowed)
    (spec(), ""),
    (spec(c(privileged=False)), ""),
    (spec(c("a", privileged=True)), 'privileged (container "a" must not set securityContext.privileged=true)'),
    (spec(c("a", privileged=True), c("b", privileged=True)),
     'privileged (containers "a", "b" must not set securityContext.privileged=true)'),
    (spec(hostNetwork=True, hostPID=True), "host namespaces (hostNetwork=true, hostPID=true)"),
    (spec(hostIPC=True), "host namespaces (hostIPC=true)"),
    (spec(volumes=[{"name": "v", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}]),
     'hostPath volumes (volume "v")'),
    (spec(volumes=[{"name": "v1", "hostPath": {"path": "/"}}, {"name": "v2", "hostPath": {"path": "/x"}}]),
     'hostPath volumes (volumes "v1", "v2")'),
    (spec({"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]}),
     'hostPort (container "a" uses hostPort 8080)'),
    (spec({"name": "a", "ports": [{"containerPort": 80, "hostPort": 0}]}), ""),
    (spec({"name": "a", "ports": [{"hostPort": 1}]}, {"name": "b", "ports": [{"hostPort": 2}]}),
     'hostPort (containers "a", "b" use hostPorts 1, 2)'),
    (spec(c(capabilities={"add": ["NET_BIND_SERVICE", "CHOWN"]})), ""),
    (spec(c("a", capabilities={"add": ["NET_ADMIN", "SYS_ADMIN", "CHOWN"]})),
     'non-default capabilities (container "a" must not include "NET_ADMIN", "SYS_ADMIN" in '
     "securityContext.capabilities.add)"),
    (spec(c(seccompProfile={"type": "RuntimeDefault"})), ""),
    (spec(c("a"), securityContext={"seccompProfile": {"type": "Unconfined"}}),
     'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'),
    (spec(c("a", seccompProfile={"type": "Unconfined"}), securityContext={"seccompProfile": {"type": "Unconfined"}}),
     'seccompProfile (pod and container "a" must not set securityContext.seccompProfile.type to "Unconfined")'),
    (spec(c("a", procMount="Unmasked")), 'procMount (container "a" must not set securityContext.procMount to '
                                          '"Unmasked")'),
    (spec(c("a", procMount="Default")), ""),
    (spec(securityContext={"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"},
                                       {"name": "kernel.msgmax", "value": "1"}]}), "forbidden sysctls (kernel.msgmax)"),
    (spec(c("a", seLinuxOptions={"type": "container_t"})), ""),
    (spec(c("a", seLinuxOptions={"type": "spc_t", "user": "u"})),
     'seLinuxOptions (container "a" set forbidden securityContext.seLinuxOptions: type "spc_t"; user "u")'),
    (spec(c("a", windowsOptions={"hostProcess": True})),
     'hostProcess (container "a" must not set securityContext.windowsOptions.hostProcess=true)'),
    (spec(c("a", appArmorProfile={"type": "Unconfined"})),
     'forbidden AppArmor profile (container "a" must not set securityContext.appArmorProfile.type to '
     '"Unconfined")'),
    (spec(c("a", appArmorProfile={"type": "RuntimeDefault"})), ""),
]


@pytest.mark.parametrize("s,want", BASELINE_CASES)
def test_baseline_checks(s: dict[str, Any], want: str) -> None:
    assert detail("baseline", s) == want
    assert detail("privileged", s) == ""  # privileged allows everything


def test_apparmor_annotation_unconfined_is_forbidden_runtime_default_allowed() -> None:
    key = policy.APPARMOR_PREFIX + "a"
    assert detail("baseline", spec(), {"annotations": {key: "runtime/default"}}) == ""
    assert detail("baseline", spec(), {"annotations": {key: "unconfined"}}) == \
        f"forbidden AppArmor profile ({key}=unconfined)"


def test_several_violations_in_kubernetes_order() -> None:
    s = spec(c("c", privileged=True), volumes=[{"name": "v", "hostPath": {"path": "/"}}])
    assert detail("baseline", s) == ('hostPath volumes (volume "v"), '
                                     'privileged (container "c" must not set securityContext.privileged=true)')
    assert policy.forbidden_reason(policy.evaluate("baseline", {}, s)) == "hostPath volumes, privileged"


RESTRICTED_CASES = [
    (spec(c("a", **RESTRICTED_OK)), ""),
    (spec(c("a", **RESTRICTED_OK), initContainers=[c("i", **RESTRICTED_OK)],
          volumes=[{"name": "cm", "configMap": {"name": "x"}}, {"name": "p", "persistentVolumeClaim": {"claimName": "x"}}]),
     ""),
    (spec(c("a")),
     'allowPrivilegeEscalation != false (container "a" must set securityContext.allowPrivilegeEscalation=false), '
     'unrestricted capabilities (container "a" must set securityContext.capabilities.drop=["ALL"]), '
     'runAsNonRoot != true (pod or container "a" must set securityContext.runAsNonRoot=true), '
     'seccompProfile (pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
     '"Localhost")'),
    # pod-level runAsNonRoot and seccomp cover the containers
    (spec(c("a", allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]}),
          securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "Localhost", "localhostProfile": "p"}}),
     ""),
    (spec(c("a", **{**RESTRICTED_OK, "runAsNonRoot": False})),
     'runAsNonRoot != true (container "a" must not set securityContext.runAsNonRoot=false)'),
    (spec(c("a", **{**RESTRICTED_OK, "runAsUser": 0})), 'runAsUser=0 (container "a" must not set runAsUser=0)'),
    (spec(c("a", **RESTRICTED_OK), securityContext={"runAsUser": 0}), "runAsUser=0 (pod must not set runAsUser=0)"),
    (spec(c("a", **{**RESTRICTED_OK, "runAsUser": 1000})), ""),
    (spec(c("a", **{**RESTRICTED_OK, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})), ""),
    (spec(c("a", **{**RESTRICTED_OK, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}})),
     'unrestricted capabilities (container "a" must not include "CHOWN" in securityContext.capabilities.add)'),
    (spec(c("a", **{**RESTRICTED_OK, "capabilities": {"add": ["SYS_ADMIN"]}})),
     'unrestricted capabilities (container "a" must set securityContext.capabilities.drop=["ALL"]; '
     'container "a" must not include "SYS_ADMIN" in securityContext.capabilities.add)'),
    (spec(c("a", **RESTRICTED_OK), volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
     'restricted volume types (volume "h" uses restricted volume type "hostPath")'),
    (spec(c("a", **RESTRICTED_OK), volumes=[{"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {}}]),
     'restricted volume types (volumes "h", "n" use restricted volume types "hostPath", "nfs")'),
    (spec(c("a", **{**RESTRICTED_OK, "seccompProfile": {"type": "Unconfined"}})),
     'seccompProfile (container "a" must not set securityContext.seccompProfile.type to "Unconfined")'),
    (spec(c("a", **{**RESTRICTED_OK, "allowPrivilegeEscalation": True})),
     'allowPrivilegeEscalation != false (container "a" must set securityContext.allowPrivilegeEscalation=false)'),
]


@pytest.mark.parametrize("s,want", RESTRICTED_CASES)
def test_restricted_checks(s: dict[str, Any], want: str) -> None:
    assert detail("restricted", s) == want


def test_restricted_keeps_the_baseline_checks() -> None:
    s = spec(c("a", **{**RESTRICTED_OK, "privileged": True}), hostNetwork=True)
    assert detail("restricted", s) == ('host namespaces (hostNetwork=true), privileged (container "a" must not set '
                                       "securityContext.privileged=true)")


# -- labels ----------------------------------------------------------------------------------------------------

DEFAULT = podsecurity.Policy(LevelVersion("baseline"), LevelVersion("baseline"), LevelVersion("baseline"))
L = podsecurity.PREFIX


def test_labels_override_the_default_per_mode() -> None:
    pol, errors = policy_for({L + "enforce": "restricted", L + "enforce-version": "v1.29", L + "warn": "privileged"},
                             DEFAULT)
    assert errors == []
    assert (str(pol.enforce), str(pol.warn), str(pol.audit)) == ("restricted:v1.29", "privileged:latest",
                                                                 "baseline:latest")
    assert policy_for({}, DEFAULT)[0] == DEFAULT


@pytest.mark.parametrize("labels,field,message,enforce", [
    ({L + "enforce": "strict"}, f"metadata.labels[{L}enforce]",
     'Invalid value: "strict": must be one of privileged, baseline, restricted', "restricted:latest"),
    ({L + "enforce-version": "v2.0"}, f"metadata.labels[{L}enforce-version]",
     'Invalid value: "v2.0": must be "latest" or "v1.x"', "baseline:latest"),
    ({L + "enforce-version": "v1.01"}, f"metadata.labels[{L}enforce-version]",
     'Invalid value: "v1.01": must be "latest" or "v1.x"', "baseline:latest"),
])
def test_bad_labels_are_errors_and_enforce_fails_closed(labels: dict[str, str], field: str, message: str,
                                                        enforce: str) -> None:
    pol, errors = policy_for(labels, DEFAULT)
    assert [e.cause()["field"] for e in errors] == [field]
    assert errors[0].cause()["message"] == message
    assert str(pol.enforce) == enforce


def test_bad_warn_level_fails_open() -> None:
    pol, errors = policy_for({L + "warn": "nope"}, DEFAULT)
    assert pol.warn.level == "privileged" and len(errors) == 1


# -- the admission hook -------------------------------------------------------------------------------------------

def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {L + k.replace("_", "-"): v for k, v in labels.items()}}}


def pod(name: str, namespace: str, s: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": s}


PRIV = spec(c("c", privileged=True))


def admit(psa: PodSecurity, kind: str, obj: dict[str, Any], namespace: dict[str, Any],
          old: dict[str, Any] | None = None) -> list[str]:
    warnings, token = podsecurity.collect()
    try:
        psa.admit(kind, obj, old, namespace)
    finally:
        podsecurity.stop_collecting(token)
    return warnings


def test_enforce_refuses_a_pod_with_kubernetes_message() -> None:
    with pytest.raises(StatusError) as e:
        admit(PodSecurity(), "Pod", pod("x", "n", PRIV), ns("n"))
    assert e.value.code == 403 and e.value.reason == "Forbidden"
    assert e.value.message == ('pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged '
                               '(container "c" must not set securityContext.privileged=true)')


def test_privileged_namespace_and_exempt_kube_system_let_anything_through() -> None:
    assert admit(PodSecurity(), "Pod", pod("x", "n", PRIV), ns("n", enforce="privileged", warn="privileged")) == []
    assert admit(PodSecurity(), "Pod", pod("x", "kube-system", PRIV), ns("kube-system")) == []
    assert admit(PodSecurity("privileged"), "Pod", pod("x", "n", PRIV), ns("n")) == []


def test_warn_level_answers_with_a_warning() -> None:
    got = admit(PodSecurity(), "Pod", pod("x", "n", spec(c("a"))), ns("n", warn="restricted"))
    assert len(got) == 1 and got[0].startswith('would violate PodSecurity "restricted:latest": '
                                               "allowPrivilegeEscalation != false (")


def test_workloads_are_warned_never_refused() -> None:
    dep = {"kind": "Deployment", "metadata": {"name": "d", "namespace": "n"},
           "spec": {"template": {"metadata": {}, "spec": PRIV}}}
    assert admit(PodSecurity(), "Deployment", dep, ns("n")) == [
        'would violate PodSecurity "baseline:latest": privileged (container "c" must not set '
        "securityContext.privileged=true)"]
    cron = {"kind": "CronJob", "metadata": {"name": "j", "namespace": "n"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": PRIV}}}}}
    assert len(admit(PodSecurity(), "CronJob", cron, ns("n"))) == 1
    assert admit(PodSecurity(), "ConfigMap", {"metadata": {"namespace": "n"}}, ns("n")) == []


def test_pod_updates_are_checked_only_when_significant() -> None:
    old = pod("x", "n", PRIV)
    labelled = dict(old, metadata=dict(old["metadata"], labels={"a": "b"}))
    assert admit(PodSecurity(), "Pod", labelled, ns("n"), old) == []  # labels only: let through
    new_image = pod("x", "n", spec({**PRIV["containers"][0], "image": "other"}))
    with pytest.raises(StatusError):
        admit(PodSecurity(), "Pod", new_image, ns("n"), old)


def test_stricter_enforce_label_warns_about_existing_pods() -> None:
    pods = [pod("p2", "n", PRIV), pod("p1", "n", PRIV), pod("p3", "n", spec(hostNetwork=True)), pod("ok", "n", spec())]
    warnings, token = podsecurity.collect()
    try:
        PodSecurity().namespace_updated(ns("n", enforce="baseline"), ns("n", enforce="privileged"), lambda: pods)
        PodSecurity().namespace_updated(ns("n", enforce="privileged"), ns("n"), lambda: pods)  # relaxed: nothing
    finally:
        podsecurity.stop_collecting(token)
    assert warnings == ['existing pods in namespace "n" violate the new PodSecurity enforce level "baseline:latest"',
                        "p1 (and 1 other pod): privileged", "p3: host namespaces"]


def test_default_enforce_flag() -> None:
    assert parse_args([]).pod_security_default_enforce == "baseline"
    assert parse_args(["--pod-security-default-enforce", "privileged"]).pod_security_default_enforce == "privileged"
    with pytest.raises(SystemExit):
        parse_args(["--pod-security-default-enforce", "strict"])


def test_bad_labels_refused_only_when_a_write_brings_them() -> None:
    bad = ns("n", enforce="strict")
    assert PodSecurity().label_errors(bad)[0]["field"] == f"metadata.labels[{L}enforce]"
    assert PodSecurity().label_errors(bad, ns("n"))  # newly bad
    assert PodSecurity().label_errors(bad, bad) == []  # stored like that already: finalize/delete still work
