"""kubectl's typed commands (`create namespace|configmap|secret|deployment|service|serviceaccount`) send
protobuf bodies: the server must decode them into the same objects the JSON form describes."""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.kubectl import Kubectl
from tests.util import unique

CASES = [
    (["configmap", "cfg", "--from-literal=a=b", "--from-literal=empty="], "configmap/cfg"),
    (["secret", "generic", "sec", "--from-literal=password=s3cr3t"], "secret/sec"),
    (["secret", "docker-registry", "reg", "--docker-server=127.0.0.1:5000", "--docker-username=u",
      "--docker-password=p"], "secret/reg"),
    (["deployment", "web", "--image=busybox:1.36", "--replicas=2", "--port=8080"], "deployment/web"),
    (["service", "nodeport", "np", "--tcp=80:8080"], "service/np"),
    (["serviceaccount", "robot"], "serviceaccount/robot"),
    (["job", "once", "--image=busybox:1.36"], "job/once"),
]


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"name": meta.get("name"), "labels": meta.get("labels"), "data": obj.get("data"),
            "type": obj.get("type"), "spec": obj.get("spec")}


def _subset(want: Any, got: Any) -> bool:
    """Everything the client meant is in the stored object (which also carries server defaults)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(_subset(v, got.get(k)) for k, v in want.items()
                                             if v not in ({}, None) and k != "creationTimestamp")
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(map(_subset, want, got))
    return want == got


@pytest.mark.parametrize("args,ref", CASES, ids=[c[1] for c in CASES])
def test_create_commands_send_protobuf(kubectl: Kubectl, ns: str, args: list[str], ref: str) -> None:
    intended = json.loads(kubectl("create", *args, "-n", ns, "--dry-run=client", "-o", "json").stdout)
    out = kubectl("create", *args, "-n", ns).stdout.strip()
    assert out.endswith(" created")
    stored = json.loads(kubectl("get", ref, "-n", ns, "-o", "json").stdout)
    assert _subset(_comparable(intended), _comparable(stored)), (intended, stored)


def test_create_namespace_and_duplicate(kubectl: Kubectl) -> None:
    name = unique("ns")
    assert kubectl("create", "namespace", name).stdout.strip() == f"namespace/{name} created"
    r = kubectl("create", "namespace", name, ok=False)
    assert r.stderr.strip() == f'Error from server (AlreadyExists): namespaces "{name}" already exists'
    kubectl("delete", "namespace", name, "--wait=false")
