"""End to end: `pkctl cluster join`. A fresh "machine" (a network namespace on the cluster network of a running
`pkctl cluster up --nodes 3`, with nothing of the cluster in it) joins with only a bootstrap token and the hash
of the cluster's CA (TLS bootstrap: a CertificateSigningRequest auto-approved for nodes), becomes Ready, runs
a pod, and serves logs/exec through the apiserver with a kubelet-serving certificate of the cluster; a wrong CA hash and unknown or expired tokens are refused with one-line errors.

Three nodes: a test home's /24 pod range is then cut into four /26s, one left for the machine that joins."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pkctl.cluster.components import BY_NAME
from pklib.api.certificates import subject_of
from tests.e2e.helpers import (Cluster, joining_machine, kubectl, local_cluster, make_namespace, no_traceback,
                               on_machine, run)
from tests.e2e.test_nodes import ready_nodes
from tests.util import unique, wait_for_sync as wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="the control plane has not landed in this build"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster("--nodes", "3", sysctls_kept=True) as c:
        yield c


@pytest.fixture(scope="module")
def machine(cluster: Cluster) -> Iterator[tuple[str, str]]:
    with joining_machine(cluster.config()) as m:
        yield m


def join_args(cluster: Cluster) -> tuple[str, str, str]:
    """(URL, token, CA hash) from the join command `token create` prints."""
    out = run("cluster", "token", "create", "--home", str(cluster.home)).stdout.strip()
    m = re.fullmatch(r"pkctl cluster join (https://\S+) --token (\S+) --ca-hash (sha256:[0-9a-f]{64})", out)
    assert m, out
    return m.group(1), m.group(2), m.group(3)


def test_join_refuses_a_wrong_ca_hash_and_bad_tokens(cluster: Cluster, machine: tuple[str, str]) -> None:
    netns, _ = machine
    url, token, ca_hash = join_args(cluster)
    home = Path(tempfile.mkdtemp(prefix="pkt-join-")) / "node"
    wrong = "sha256:" + ("0" * 64 if ca_hash[7] != "0" else "1" * 64)
    p = on_machine(netns, "cluster", "join", url, "--token", token, "--ca-hash", wrong, "--home", str(home),
                   "--node-name", "refused")
    assert p.returncode == 1 and no_traceback(p), p.stderr
    assert p.stderr.startswith("error: the cluster's CA has hash sha256:") and "refusing to trust" in p.stderr
    unknown = "abcdef.0123456789abcdef"
    p = on_machine(netns, "cluster", "join", url, "--token", unknown, "--ca-hash", ca_hash, "--home", str(home),
                   "--node-name", "refused")
    assert p.returncode == 1 and no_traceback(p) and "refused the bootstrap token" in p.stderr, p.stderr
    # an expired token: the apiserver refuses it at once, the token cleaner removes it
    expired = run("cluster", "token", "create", "--ttl", "1ms", "--home", str(cluster.home)).stdout.split()[5]
    p = on_machine(netns, "cluster", "join", url, "--token", expired, "--ca-hash", ca_hash, "--home", str(home),
                   "--node-name", "refused")
    assert p.returncode == 1 and "refused the bootstrap token" in p.stderr, p.stderr
    assert wait_for(lambda: expired not in run("cluster", "token", "list", "--home", str(cluster.home)).stdout,
                    timeout=30)
    p = on_machine(netns, "cluster", "join", url, "--token", "nope", "--ca-hash", ca_hash, "--home", str(home))
    assert p.returncode == 1 and "--token must be a bootstrap token" in p.stderr
    assert not home.exists()
    shutil.rmtree(home.parent)
    assert cluster.names("/api/v1/nodes") & {"refused"} == set()


def test_a_machine_joins_with_a_token_and_runs_pods(cluster: Cluster, machine: tuple[str, str]) -> None:
    netns, ip = machine
    url, token, ca_hash = join_args(cluster)
    listed = run("cluster", "token", "list", "--home", str(cluster.home)).stdout
    assert listed.split()[:6] == ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA"] and token in listed
    node = unique("joined")
    home = Path(tempfile.mkdtemp(prefix="pkt-join-")) / "node"
    try:
        p = on_machine(netns, "cluster", "join", url, "--token", token, "--ca-hash", ca_hash, "--home", str(home),
                       "--node-name", node, "--wait-timeout", "90")
        assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
        assert "cluster CA verified" in p.stdout and "kubelet ready" in p.stdout
        # the node's credentials: a certificate of the cluster CA for system:node:<name>, no token anywhere
        cert = x509.load_pem_x509_certificate((home / "pki" / "kubelet-client.crt").read_bytes())
        assert subject_of(cert) == (f"system:node:{node}", ["system:nodes"])
        assert token not in (home / "kubelet.kubeconfig").read_text()
        assert wait_for(lambda: ready_nodes(cluster).get(node), timeout=60) == ip
        code, csrs = cluster.api("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        mine = [c for c in csrs["items"] if c["spec"]["username"] == f"system:bootstrap:{token.split('.')[0]}"]
        assert len(mine) == 1 and mine[0]["status"]["conditions"][0]["reason"] == "AutoApproved"
        assert base64.b64decode(mine[0]["status"]["certificate"]) == (home / "pki" / "kubelet-client.crt").read_bytes()
        # NodeRestriction applies to the joined node's identity: it may not change another node
        kc = str(home / "kubelet.kubeconfig")
        other = next(n for n in ready_nodes(cluster) if n != node)
        r = subprocess.run(["kubectl", "--kubeconfig", kc, "label", "node", other, "x=y"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0 and "forbidden" in r.stderr.lower(), r.stderr
        # a pod scheduled on it runs there
        ns = make_namespace(cluster)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-joined", "namespace": ns},
               "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "pkube.local/busybox:latest",
                                        "command": ["sh", "-c", "echo hello from the joined node; sleep 3600"]}]}}
        code, body = cluster.api(f"/api/v1/namespaces/{ns}/pods", pod)
        assert code == 201, body

        def running() -> dict[str, Any] | None:
            _, got = cluster.api(f"/api/v1/namespaces/{ns}/pods/on-joined")
            return got if got.get("status", {}).get("phase") == "Running" else None
        got = wait_for(running, timeout=90, message=f"the pod to run on {node}")
        assert got["spec"]["nodeName"] == node and got["status"]["hostIP"] == ip
        # the kubelet serves with a certificate of the cluster CA it asked for as the node (kubelet-serving CSR,
        # auto-approved for its own addresses): the apiserver's logs/exec reach it
        def serving_csr() -> dict[str, Any] | None:
            _, got = cluster.api("/apis/certificates.k8s.io/v1/certificatesigningrequests")
            return next((c for c in got["items"] if c["spec"]["username"] == f"system:node:{node}"
                         and c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
                         and (c.get("status") or {}).get("certificate")), None)
        csr = wait_for(serving_csr, timeout=30, interval=0.3, message="the joined kubelet's serving certificate")
        assert csr["status"]["conditions"][0]["reason"] == "AutoApproved"
        served = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
        assert ip in [str(a) for a in served.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)]

        def logged() -> subprocess.CompletedProcess[str] | None:
            p = kubectl(cluster, "logs", "-n", ns, "on-joined")
            return p if p.returncode == 0 else None
        logs = wait_for(logged, timeout=20, interval=0.5, message="kubectl logs of the joined pod")
        assert logs.stdout == "hello from the joined node\n", logs.stderr
        mine = run("--kubeconfig", str(cluster.kubeconfig), "logs", "-n", ns, "on-joined")
        assert mine.stdout == "hello from the joined node\n"
        ran = kubectl(cluster, "exec", "-n", ns, "on-joined", "--", "sh", "-c", "echo exec on $(hostname)")
        assert ran.returncode == 0 and ran.stdout == "exec on on-joined\n", ran.stderr
        cluster.api(f"/api/v1/namespaces/{ns}", method="DELETE")
        status = on_machine(netns, "cluster", "status", "--home", str(home))
        assert f"Node {node} joined to {url}" in status.stdout, status.stdout
        # one process for the node: the kubelet's, hosting the proxy (as a k3s agent does)
        rows = {r[0]: r for r in map(str.split, status.stdout.splitlines()) if r[:1] in (["kubelet"], ["proxy"])}
        assert rows["proxy"][1:4] == ["Running", rows["kubelet"][2], "(shared)"], status.stdout
        # after a stop (a reboot), `cluster up` starts the node again with the credentials it has
        stop = on_machine(netns, "cluster", "down", "--home", str(home))
        assert stop.returncode == 0, stop.stderr
        again = on_machine(netns, "cluster", "up", "--home", str(home), "--wait-timeout", "60")
        assert again.returncode == 0 and "kubelet ready" in again.stdout, f"{again.stdout}\n{again.stderr}"
        assert (home / "pki" / "kubelet-client.crt").read_bytes() == cert.public_bytes(serialization.Encoding.PEM)
    finally:
        if (home / "config.json").exists():
            joined = json.loads((home / "config.json").read_text())
            down = on_machine(netns, "cluster", "down", "--purge", "--home", str(home))
            assert down.returncode == 0, f"{down.stdout}\n{down.stderr}"
            assert not [n for n in os.listdir("/run/netns") if n.startswith(joined["netns_prefix"])]
            assert not list(Path("/sys/fs/cgroup").glob(f"**/{joined['cgroup_parent']}"))
        shutil.rmtree(home.parent, ignore_errors=True)
        cluster.api(f"/api/v1/nodes/{node}", method="DELETE")
    p = run("cluster", "token", "delete", token, "--home", str(cluster.home))
    assert f'bootstrap token "{token.split(".")[0]}" deleted' in p.stdout
    assert token not in run("cluster", "token", "list", "--home", str(cluster.home)).stdout
