"""Pure parts of the client-compatibility features: server-side apply field sets, content negotiation, protobuf."""
from __future__ import annotations

import copy

import pytest

from apiserver import fieldsets
from apiserver.aggregated_discovery import requested_version as aggregated_version
from apiserver.serverside_apply import merge_intent
from apiserver.status import StatusError
from apiserver.tables import requested_version as table_version
from pklib.resources import lookup

DEPLOY = lookup("deployments")
assert DEPLOY is not None


def _intent(replicas: int | None = 1, env: bool = True) -> dict:
    container: dict = {"name": "web", "image": "busybox"}
    if env:
        container["env"] = [{"name": "A", "value": "1"}]
    spec: dict = {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "b"}},
            "spec": spec}


def test_field_set_uses_merge_keys_and_skips_identity() -> None:
    fields = fieldsets.field_set(_intent())
    c = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}')
    assert c + (".",) in fields and c + ("f:image",) in fields
    assert c + ("f:env", 'k:{"name":"A"}', "f:value") in fields
    assert ("f:metadata", "f:labels", "f:a") in fields
    assert not any(p[:2] == ("f:metadata", "f:name") or p[0] in ("f:apiVersion", "f:kind") for p in fields)
    assert fieldsets.from_fields_v1(fieldsets.to_fields_v1(fields)) == fields
    assert fieldsets.describe(c + ("f:image",)) == '.spec.template.spec.containers[name="web"].image'


def test_merge_intent_conflicts_force_and_removal() -> None:
    live = merge_intent(DEPLOY, {"metadata": {"name": "web"}}, _intent(), "alice", force=False)
    assert [m["manager"] for m in live["metadata"]["managedFields"]] == ["alice"]
    # Same value from another manager: shared ownership, no conflict.
    live = merge_intent(DEPLOY, live, _intent(), "bob", force=False)
    with pytest.raises(StatusError) as err:
        merge_intent(DEPLOY, copy.deepcopy(live), _intent(replicas=3), "bob", force=False)
    assert err.value.code == 409
    assert err.value.details == {"causes": [{"reason": "FieldManagerConflict", "message":
                                             'conflict with "alice" using apps/v1', "field": ".spec.replicas"}]}
    forced = merge_intent(DEPLOY, copy.deepcopy(live), _intent(replicas=3), "bob", force=True)
    assert forced["spec"]["replicas"] == 3
    alice = next(m for m in forced["metadata"]["managedFields"] if m["manager"] == "alice")
    assert "f:replicas" not in alice["fieldsV1"]["f:spec"]
    # alice drops env A, which bob also set: it stays; bob drops it too: it goes.
    step = merge_intent(DEPLOY, forced, _intent(replicas=None, env=False), "alice", force=False)
    assert step["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    step = merge_intent(DEPLOY, step, _intent(replicas=3, env=False), "bob", force=False)
    assert step["spec"]["template"]["spec"]["containers"][0].get("env") in (None, [])
    assert step["spec"]["replicas"] == 3


def test_accept_header_negotiation() -> None:
    assert table_version("application/json;as=Table;v=v1;g=meta.k8s.io,application/json") == "v1"
    assert table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "v1beta1"
    assert table_version("application/json") is None
    assert aggregated_version("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList") == "v2"
    assert aggregated_version("application/json;g=apidiscovery.k8s.io;v=v1;as=APIGroupDiscoveryList") is None
    assert aggregated_version("application/json") is None


def test_protobuf_envelope_errors() -> None:
    """What this server cannot read is a 415 (send JSON); bytes that are not protobuf at all are a 400."""
    from apiserver import protobuf
    for body, code in ((b"{}", 415), (protobuf.MAGIC + b"\x0a\x04\x12\x02Xy", 415),
                       (protobuf.MAGIC + b"\x0a\xff", 400), (protobuf.MAGIC + b"\x0a\x04\x12\x02\xff\xfe", 400)):
        with pytest.raises(StatusError) as err:
            protobuf.decode_object(body)
        assert err.value.code == code, body


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def _pb(number: int, value: bytes | str | int) -> bytes:
    """One protobuf field: an int as a varint, anything else length-delimited."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def test_protobuf_pod_as_kubectl_debug_sends_it() -> None:
    """kubectl debug node/NAME's pod: volumes and their sources (embedded in Volume), mounts, tolerations; Go's
    pointer fields keep a zero sent on purpose (tolerationSeconds 0, enableServiceLinks false, privileged false),
    plain ones sent empty are left out (readOnly false)."""
    from apiserver import protobuf
    container = (_pb(1, "debugger") + _pb(2, "busybox") + _pb(9, _pb(1, "host-root") + _pb(2, 0) + _pb(3, "/host"))
                 + _pb(15, _pb(2, 0)) + _pb(16, 1))
    spec = (_pb(1, _pb(1, "host-root") + _pb(2, _pb(1, _pb(1, "/")))) + _pb(2, container) + _pb(3, "Never")
            + _pb(10, "node-1") + _pb(12, 1) + _pb(13, 0) + _pb(22, _pb(2, "Exists") + _pb(5, 0)) + _pb(30, 0))
    raw = _pb(1, _pb(1, "node-debugger")) + _pb(2, spec) + _pb(3, b"")
    body = protobuf.MAGIC + _pb(1, _pb(1, "v1") + _pb(2, "Pod")) + _pb(2, raw)
    assert protobuf.decode_object(body) == {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node-debugger"},
        "spec": {"volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
                 "containers": [{"name": "debugger", "image": "busybox",
                                 "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
                                 "securityContext": {"privileged": False}, "stdin": True}],
                 "restartPolicy": "Never", "nodeName": "node-1", "hostPID": True,
                 "tolerations": [{"operator": "Exists", "tolerationSeconds": 0}], "enableServiceLinks": False}}


def test_unknown_fields_are_found_by_path() -> None:
    from apiserver.fieldvalidation import unknown_fields
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "labels": {"any": "key"}, "nmae": "typo"},
           "spec": {"containers": [{"name": "c", "image": "i", "imagez": "x", "securityContext": {"anything": 1}}],
                    "volumes": [{"name": "v", "nfs": {"server": "s"}}],
                    "$setElementOrder/containers": [{"name": "c"}]},
           "status": {"somethingNew": 1}}
    assert unknown_fields("Pod", pod) == ["metadata.nmae", "spec.containers[0].imagez", "spec.volumes[0].nfs"]
