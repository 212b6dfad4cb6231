"""Validation through the real apiserver: each class of error is a 422 Invalid Status whose
causes name the field (Kubernetes' paths, reasons and wording), and nothing is stored."""
from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.util import unique

Body = dict[str, Any]


def pod(name: str, **spec: Any) -> Body:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}], **spec}}


def deployment(name: str) -> Body:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}


def service(name: str, **spec: Any) -> Body:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def edit(body: Body, fn: Callable[[Body], None]) -> Body:
    body = copy.deepcopy(body)
    fn(body)
    return body


def container(body: Body, i: int = 0) -> dict[str, Any]:
    spec = body["spec"]["template"]["spec"] if "template" in body["spec"] else body["spec"]
    return spec["containers"][i]


# (resource, body factory, expected causes as (field, reason, message fragment))
CASES: list[tuple[str, Callable[[str], Body], list[tuple[str, str, str]]]] = [
    # names
    ("pods", lambda n: edit(pod(n), lambda b: b["metadata"].update(name="Bad_Name")),
     [("metadata.name", "FieldValueInvalid", "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must "
                                              "consist of")]),
    ("services", lambda n: edit(service(n), lambda b: b["metadata"].update(name="1" + n)),
     [("metadata.name", "FieldValueInvalid", "a DNS-1035 label must consist of")]),
    ("configmaps", lambda n: {"metadata": {"name": n + ".-x"}, "data": {}},
     [("metadata.name", "FieldValueInvalid", "RFC 1123 subdomain")]),
    # labels and annotations
    ("pods", lambda n: edit(pod(n), lambda b: b["metadata"].update(labels={"bad key": "v", "ok": "-bad-"})),
     [("metadata.labels", "FieldValueInvalid", "Invalid value: \"bad key\": name part must consist of"),
      ("metadata.labels", "FieldValueInvalid", "Invalid value: \"-bad-\": a valid label must be an empty string")]),
    ("configmaps", lambda n: {"metadata": {"name": n, "annotations": {"a/b/c": "x"}}},
     [("metadata.annotations", "FieldValueInvalid", "a qualified name must consist of")]),
    # structure and types (JSON Schema)
    ("pods", lambda n: edit(pod(n), lambda b: b["spec"].pop("containers")),
     [("spec.containers", "FieldValueRequired", "Required value")]),
    ("pods", lambda n: edit(pod(n), lambda b: container(b).update(ports=[{"containerPort": "80"}])),
     [("spec.containers[0].ports[0].containerPort", "FieldValueInvalid",
       "Invalid value: \"80\": must be of type integer")]),
    ("deployments", lambda n: edit(deployment(n), lambda b: b["spec"].update(replicas="three")),
     [("spec.replicas", "FieldValueInvalid", "must be of type integer")]),
    ("deployments", lambda n: edit(deployment(n), lambda b: b["spec"].pop("selector")),
     [("spec.selector", "FieldValueRequired", "Required value")]),
    # required values and duplicates
    ("pods", lambda n: edit(pod(n), lambda b: container(b).pop("image")),
     [("spec.containers[0].image", "FieldValueRequired", "Required value")]),
    ("pods", lambda n: edit(pod(n), lambda b: b["spec"].update(
        initContainers=[{"name": "app", "image": "busybox"}])),
     [("spec.containers[0].name", "FieldValueDuplicate", "Duplicate value: \"app\"")]),
    ("pods", lambda n: edit(pod(n), lambda b: container(b).update(ports=[
        {"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}])),
     [("spec.containers[0].ports[1].name", "FieldValueDuplicate", "Duplicate value: \"http\"")]),
    # ranges
    ("pods", lambda n: edit(pod(n), lambda b: container(b).update(ports=[{"containerPort": 70000}])),
     [("spec.containers[0].ports[0].containerPort", "FieldValueInvalid",
       "Invalid value: 70000: must be between 1 and 65535, inclusive")]),
    ("services", lambda n: service(n, ports=[{"port": 0}]),
     [("spec.ports[0].port", "FieldValueInvalid", "must be between 1 and 65535, inclusive")]),
    # enums
    ("pods", lambda n: pod(n, restartPolicy="Sometimes"),
     [("spec.restartPolicy", "FieldValueNotSupported",
       "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"")]),
    ("services", lambda n: service(n, type="Magic"),
     [("spec.type", "FieldValueNotSupported", "Unsupported value: \"Magic\"")]),
    # quantities
    ("pods", lambda n: edit(pod(n), lambda b: container(b).update(resources={"limits": {"cpu": "lots"}})),
     [("spec.containers[0].resources.limits[cpu]", "FieldValueInvalid",
       "Invalid value: \"lots\": quantities must match the regular expression")]),
    ("pods", lambda n: edit(pod(n), lambda b: container(b).update(
        resources={"limits": {"memory": "64Mi"}, "requests": {"memory": "1Gi"}})),
     [("spec.containers[0].resources.requests[memory]", "FieldValueInvalid",
       "Invalid value: \"1Gi\": must be less than or equal to memory limit of 64Mi")]),
    # workload selectors
    ("deployments", lambda n: edit(deployment(n), lambda b: b["spec"]["template"]["metadata"].update(
        labels={"app": "other"})),
     [("spec.template.metadata.labels", "FieldValueInvalid", "`selector` does not match template `labels`")]),
    ("deployments", lambda n: edit(deployment(n), lambda b: b["spec"]["template"]["spec"].update(
        restartPolicy="Never")),
     [("spec.template.spec.restartPolicy", "FieldValueNotSupported", "supported values: \"Always\"")]),
    ("deployments", lambda n: edit(deployment(n), lambda b: b["spec"].update(
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})),
     [("spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid", "may not be 0 when `maxSurge` is 0")]),
    # cross-field rules
    ("pods", lambda n: edit(pod(n), lambda b: container(b).update(volumeMounts=[{"name": "nope",
                                                                                  "mountPath": "/x"}])),
     [("spec.containers[0].volumeMounts[0].name", "FieldValueNotFound", "Not found: \"nope\"")]),
    ("services", lambda n: service(n, ports=[{"port": 80}, {"port": 81}]),
     [("spec.ports[0].name", "FieldValueRequired", "Required value")]),
    ("services", lambda n: service(n, ports=[{"port": 80, "nodePort": 30080}]),
     [("spec.ports[0].nodePort", "FieldValueForbidden", "may not be used when `type` is 'ClusterIP'")]),
    ("secrets", lambda n: {"metadata": {"name": n}, "data": {"k": "not base64!"}},
     [("data[k]", "FieldValueInvalid", "must be base64-encoded")]),
    ("persistentvolumeclaims", lambda n: {"metadata": {"name": n}, "spec": {"accessModes": ["ReadWriteOnce"]}},
     [("spec.resources[storage]", "FieldValueRequired", "Required value")]),
]


@pytest.mark.parametrize("plural, make, expected", CASES,
                         ids=[f"{c[0]}-{c[2][0][0]}-{c[2][0][1]}" for c in CASES])
async def test_invalid_object_is_422_with_field_causes_and_not_stored(
        client: Client, namespace: str, plural: str, make: Callable[[str], Body],
        expected: list[tuple[str, str, str]]) -> None:
    res = lookup(plural)
    name = unique("v")
    body = make(name)
    body.setdefault("apiVersion", res.api_version)
    body.setdefault("kind", res.kind)
    with pytest.raises(ApiError) as err:
        await client.create(res, body, namespace=namespace)
    e = err.value
    assert (e.code, e.reason) == (422, "Invalid"), e.status
    assert e.status["details"]["kind"] == res.kind
    for field, reason, fragment in expected:
        assert any(c["field"] == field and c["reason"] == reason and fragment in c["message"] for c in e.causes), \
            (field, reason, fragment, e.causes)
    assert expected[0][0] in e.message  # the summary names the field too
    # Nothing was written: the namespace holds no object of this kind.
    assert (await client.list(res, namespace))["items"] == []


async def test_many_errors_are_reported_at_once(client: Client, namespace: str) -> None:
    body = pod(unique("p"), restartPolicy="Sometimes", dnsPolicy="Weird")
    container(body).update(imagePullPolicy="Sometimes", ports=[{"containerPort": 0}])
    with pytest.raises(ApiError) as err:
        await client.create(lookup("pods"), body, namespace=namespace)
    fields = {c["field"] for c in err.value.causes}
    assert {"spec.restartPolicy", "spec.dnsPolicy", "spec.containers[0].imagePullPolicy",
            "spec.containers[0].ports[0].containerPort"} <= fields


async def test_generate_name_gets_validated_prefix(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    created = await client.create(cm, {"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"generateName": "web-"}}, namespace=namespace)
    assert created["metadata"]["name"].startswith("web-") and len(created["metadata"]["name"]) > 4
    with pytest.raises(ApiError) as err:
        await client.create(cm, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "Web_"}},
                            namespace=namespace)
    assert err.value.code == 422


async def test_valid_objects_of_each_class_are_accepted(client: Client, namespace: str) -> None:
    """The rules do not reject what Kubernetes accepts (guards against over-strict checks)."""
    body = pod(unique("ok"))
    container(body).update(
        ports=[{"containerPort": 80, "name": "http"}, {"containerPort": 53, "protocol": "UDP", "name": "dns"}],
        resources={"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "0.1", "memory": "1e6"}},
        env=[{"name": "MY_VAR.x", "value": "1"}],
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
        livenessProbe={"exec": {"command": ["true"]}},
        readinessProbe={"httpGet": {"port": "http"}, "successThreshold": 2})
    body["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    body["spec"]["tolerations"] = [{"operator": "Exists"}]
    body["metadata"]["labels"] = {"app.kubernetes.io/name": "web", "tier": ""}
    created = await client.create(lookup("pods"), body, namespace=namespace)
    assert created["metadata"]["labels"]["tier"] == ""


async def test_statefulset_template_may_mount_a_volume_claim_template(client: Client, namespace: str) -> None:
    """Kubernetes accepts volumeMounts naming a volumeClaimTemplate (the StatefulSet tutorial does)."""
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox",
                                                          "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                              "spec": {"accessModes": ["ReadWriteOnce"],
                                                       "resources": {"requests": {"storage": "1Gi"}}}}]}}
    created = await client.create(lookup("statefulsets"), sts, namespace)
    assert created["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    # a mount naming neither a volume nor a claim template is still refused
    sts["metadata"]["name"] = "db2"
    sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "nope"
    try:
        await client.create(lookup("statefulsets"), sts, namespace)
    except ApiError as e:
        assert e.code == 422 and any(c["field"].endswith("volumeMounts[0].name") for c in e.causes)
    else:
        raise AssertionError("a mount of an unknown volume was accepted")
