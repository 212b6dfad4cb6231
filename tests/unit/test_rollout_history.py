"""Deployment history from ReplicaSets, undo targets and patches, and kubectl's pod template text."""
from __future__ import annotations

from typing import Any

import pytest

from pklib.patch import json_patch
from pkctl.rollout_history import history_table, owned_replicasets, rollback_target, undo_patch
from pklib.api.podtemplate import same_template
from pkctl.rollout_status import RolloutError
from pkctl.rollout_template import describe_template


def template(image: str, hash_: str | None = None, **extra: Any) -> dict[str, Any]:
    labels = {"app": "web", **({"pod-template-hash": hash_} if hash_ else {})}
    return {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image, **extra}]}}


def rs(name: str, revision: str | None, image: str, owner: str = "uid-web", cause: str | None = None) -> dict[str, Any]:
    annotations = {"deployment.kubernetes.io/desired-replicas": "3"}
    if revision is not None:
        annotations["deployment.kubernetes.io/revision"] = revision
    if cause:
        annotations["kubernetes.io/change-cause"] = cause
    return {"metadata": {"name": name, "annotations": annotations,
                         "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": owner, "controller": True}]},
            "spec": {"template": template(image, hash_=name.rsplit("-", 1)[-1])}}


WEB: dict[str, Any] = {"metadata": {"name": "web", "uid": "uid-web", "resourceVersion": "42",
                                    "annotations": {"deployment.kubernetes.io/revision": "3", "team": "blue"}},
                       "spec": {"template": template("busybox:3")}}
HISTORY = [rs("web-aaa", "1", "busybox:1", cause="first"), rs("web-ccc", "3", "busybox:3"),
           rs("web-bbb", "2", "busybox:2"), rs("web-old", None, "busybox:0")]


def test_owned_replicasets_by_controller_uid() -> None:
    stranger = rs("web-zzz", "7", "busybox:7", owner="uid-of-a-deleted-namesake")
    assert [r["metadata"]["name"] for r in owned_replicasets(WEB, HISTORY + [stranger])] == \
        ["web-aaa", "web-ccc", "web-bbb", "web-old"]


def test_history_table_is_sorted_with_change_causes() -> None:
    assert history_table(HISTORY) == ("REVISION  CHANGE-CAUSE\n"
                                      "1         first\n"
                                      "2         <none>\n"
                                      "3         <none>\n")
    assert history_table([rs("web-old", None, "busybox:0")]) == "No rollout history found."
    long = [rs("web-x", "1234567890", "i", cause="c")]
    assert history_table(long) == "REVISION    CHANGE-CAUSE\n1234567890  c\n"


def test_rollback_target() -> None:
    assert rollback_target(HISTORY, 0, "web")[0] == 2, "undo goes to the revision before the latest"
    revision, target = rollback_target(HISTORY, 1, "web")
    assert (revision, target["metadata"]["name"]) == (1, "web-aaa")
    with pytest.raises(RolloutError, match="^unable to find specified revision 9 in history$"):
        rollback_target(HISTORY, 9, "web")
    with pytest.raises(RolloutError, match="^unable to find specified revision -1 in history$"):
        rollback_target(HISTORY, -1, "web")
    with pytest.raises(RolloutError, match='^no rollout history found for deployment "web"$'):
        rollback_target([rs("web-ccc", "3", "busybox:3")], 0, "web")


def test_same_template_ignores_hash_label_and_empty_fields() -> None:
    assert same_template(template("busybox:1"), template("busybox:1", hash_="abc"))
    assert same_template(template("busybox:1", resources={}), template("busybox:1"))
    assert not same_template(template("busybox:1"), template("busybox:2"))
    assert not same_template(template("busybox:1", args=["x"]), template("busybox:1"))


def test_undo_patch_restores_the_template_and_keeps_deployment_annotations() -> None:
    target = rs("web-aaa", "1", "busybox:1", cause="first")
    patched = json_patch(WEB, undo_patch(WEB, target))
    assert patched["spec"]["template"] == template("busybox:1"), "the template comes back without its hash label"
    annotations = patched["metadata"]["annotations"]
    assert annotations["kubernetes.io/change-cause"] == "first"
    assert annotations["team"] == "blue"
    assert annotations["deployment.kubernetes.io/revision"] == "3", "the controller sets the next revision"
    assert "deployment.kubernetes.io/desired-replicas" not in annotations
    bare: dict[str, Any] = {"metadata": {"name": "web"}, "spec": {"template": template("busybox:3")}}
    assert json_patch(bare, undo_patch(bare, target))["metadata"]["annotations"] == \
        {"kubernetes.io/change-cause": "first"}
    assert WEB["spec"]["template"] == template("busybox:3"), "the inputs are not modified"


def test_describe_template_matches_kubectl_byte_for_byte() -> None:
    # A ReplicaSet template as pkube stores it, and what kubectl v1.32 printed for it with
    # `kubectl rollout history deployment/rich --revision=1` (the header line left out).
    assert describe_template(RICH) == RICH_TEXT
    assert describe_template({"metadata": {}, "spec": {"containers": []}}) == (
        "Pod Template:\n  Labels:\t<none>\n  Containers: <none>\n  Volumes:\t<none>\n"
        "  Node-Selectors:\t<none>\n  Tolerations:\t<none>\n")


RICH: dict[str, Any] = {'metadata': {'annotations': {'note': 'hello'},
                                     'labels': {'app': 'rich', 'pod-template-hash': 'ksc8btfqd4', 'tier': 'web'}},
                        'spec': {'containers': [{'args': ['httpd', '-f'],
                                                 'env': [{'name': 'MODE', 'value': 'fast'},
                                                         {'name': 'HOST_IP',
                                                          'valueFrom': {'fieldRef': {'apiVersion': 'v1',
                                                                                     'fieldPath': 'status.hostIP'}}},
                                                         {'name': 'COLOR',
                                                          'valueFrom': {'configMapKeyRef': {'key': 'color',
                                                                                            'name': 'cfg'}}},
                                                         {'name': 'PASS',
                                                          'valueFrom': {'secretKeyRef': {'key': 'pw',
                                                                                         'name': 'sec',
                                                                                         'optional': True}}}],
                                                 'image': 'busybox:1.36',
                                                 'imagePullPolicy': 'IfNotPresent',
                                                 'livenessProbe': {'failureThreshold': 3,
                                                                   'periodSeconds': 5,
                                                                   'successThreshold': 1,
                                                                   'tcpSocket': {'port': 80},
                                                                   'timeoutSeconds': 1},
                                                 'name': 'web',
                                                 'ports': [{'containerPort': 80, 'protocol': 'TCP'},
                                                           {'containerPort': 53,
                                                            'hostPort': 5353,
                                                            'protocol': 'UDP'}],
                                                 'readinessProbe': {'failureThreshold': 3,
                                                                    'httpGet': {'path': '/ready',
                                                                                'port': 80,
                                                                                'scheme': 'HTTP'},
                                                                    'initialDelaySeconds': 2,
                                                                    'periodSeconds': 10,
                                                                    'successThreshold': 1,
                                                                    'timeoutSeconds': 1},
                                                 'resources': {'limits': {'cpu': '500m', 'memory': '64Mi'},
                                                               'requests': {'cpu': '100m'}},
                                                 'startupProbe': {'exec': {'command': ['cat', '/tmp/ok']},
                                                                  'failureThreshold': 3,
                                                                  'periodSeconds': 10,
                                                                  'successThreshold': 1,
                                                                  'timeoutSeconds': 1},
                                                 'terminationMessagePath': '/dev/termination-log',
                                                 'terminationMessagePolicy': 'File',
                                                 'volumeMounts': [{'mountPath': '/data', 'name': 'data'},
                                                                  {'mountPath': '/etc/cfg',
                                                                   'name': 'cfg',
                                                                   'readOnly': True,
                                                                   'subPath': 'app.conf'}]},
                                                {'image': 'busybox',
                                                 'imagePullPolicy': 'Always',
                                                 'name': 'side',
                                                 'ports': [{'containerPort': 8080,
                                                            'name': 'http',
                                                            'protocol': 'TCP'}],
                                                 'terminationMessagePath': '/dev/termination-log',
                                                 'terminationMessagePolicy': 'File'}],
                                 'dnsPolicy': 'ClusterFirst',
                                 'enableServiceLinks': True,
                                 'initContainers': [{'command': ['sh', '-c', 'echo hi'],
                                                     'image': 'busybox',
                                                     'imagePullPolicy': 'Always',
                                                     'name': 'init',
                                                     'terminationMessagePath': '/dev/termination-log',
                                                     'terminationMessagePolicy': 'File'}],
                                 'nodeSelector': {'disk': 'ssd'},
                                 'restartPolicy': 'Always',
                                 'schedulerName': 'default-scheduler',
                                 'securityContext': {},
                                 'terminationGracePeriodSeconds': 30,
                                 'tolerations': [{'effect': 'NoSchedule',
                                                  'key': 'dedicated',
                                                  'operator': 'Equal',
                                                  'value': 'web'},
                                                 {'operator': 'Exists'},
                                                 {'effect': 'NoExecute',
                                                  'key': 'node.kubernetes.io/unreachable',
                                                  'operator': 'Exists',
                                                  'tolerationSeconds': 30}],
                                 'volumes': [{'emptyDir': {}, 'name': 'data'},
                                             {'configMap': {'defaultMode': 420, 'name': 'cfg'}, 'name': 'cfg'},
                                             {'name': 'sec', 'secret': {'defaultMode': 420, 'secretName': 'sec'}},
                                             {'hostPath': {'path': '/var/log'}, 'name': 'host'},
                                             {'name': 'claim', 'persistentVolumeClaim': {'claimName': 'c1'}}]}}
RICH_TEXT = (
    'Pod Template:\n'
    '  Labels:\tapp=rich\n'
    '\tpod-template-hash=ksc8btfqd4\n'
    '\ttier=web\n'
    '  Annotations:\tnote: hello\n'
    '  Init Containers:\n'
    '   init:\n'
    '    Image:\tbusybox\n'
    '    Port:\t<none>\n'
    '    Host Port:\t<none>\n'
    '    Command:\n'
    '      sh\n'
    '      -c\n'
    '      echo hi\n'
    '    Environment:\t<none>\n'
    '    Mounts:\t<none>\n'
    '  Containers:\n'
    '   web:\n'
    '    Image:\tbusybox:1.36\n'
    '    Ports:\t80/TCP, 53/UDP\n'
    '    Host Ports:\t0/TCP, 5353/UDP\n'
    '    Args:\n'
    '      httpd\n'
    '      -f\n'
    '    Limits:\n'
    '      cpu:\t500m\n'
    '      memory:\t64Mi\n'
    '    Requests:\n'
    '      cpu:\t100m\n'
    '    Liveness:\ttcp-socket :80 delay=0s timeout=1s period=5s #success=1 #failure=3\n'
    '    Readiness:\thttp-get http://:80/ready delay=2s timeout=1s period=10s #success=1 #failure=3\n'
    '    Startup:\texec [cat /tmp/ok] delay=0s timeout=1s period=10s #success=1 #failure=3\n'
    '    Environment:\n'
    '      MODE:\tfast\n'
    '      HOST_IP:\t (v1:status.hostIP)\n'
    "      COLOR:\t<set to the key 'color' of config map 'cfg'>\tOptional: false\n"
    "      PASS:\t<set to the key 'pw' in secret 'sec'>\tOptional: true\n"
    '    Mounts:\n'
    '      /data from data (rw)\n'
    '      /etc/cfg from cfg (ro,path="app.conf")\n'
    '   side:\n'
    '    Image:\tbusybox\n'
    '    Port:\t8080/TCP\n'
    '    Host Port:\t0/TCP\n'
    '    Environment:\t<none>\n'
    '    Mounts:\t<none>\n'
    '  Volumes:\n'
    '   data:\n'
    "    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n"
    '    Medium:\t\n'
    '    SizeLimit:\t<unset>\n'
    '   cfg:\n'
    '    Type:\tConfigMap (a volume populated by a ConfigMap)\n'
    '    Name:\tcfg\n'
    '    Optional:\tfalse\n'
    '   sec:\n'
    '    Type:\tSecret (a volume populated by a Secret)\n'
    '    SecretName:\tsec\n'
    '    Optional:\tfalse\n'
    '   host:\n'
    '    Type:\tHostPath (bare host directory volume)\n'
    '    Path:\t/var/log\n'
    '    HostPathType:\t<none>\n'
    '   claim:\n'
    '    Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n'
    '    ClaimName:\tc1\n'
    '    ReadOnly:\tfalse\n'
    '  Node-Selectors:\tdisk=ssd\n'
    '  Tolerations:\top=Exists\n'
    '\tdedicated=web:NoSchedule\n'
    '\tnode.kubernetes.io/unreachable:NoExecute op=Exists for 30s\n'
)
