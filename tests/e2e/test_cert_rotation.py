"""End to end: a joined node renews its certificates while it runs (the kubelet's --rotate-certificates and
--rotate-server-certificates, Kubernetes' certificate manager). With `up --cluster-signing-duration 60s`, the node's
client certificate and its kubelet API's serving certificate are each replaced at 70-90 % of their lifetime by
new ones (new serial, new key, still valid), without a restart: past the first certificates' notAfter the node
stays Ready, its kubeconfig still authenticates, its kubelet API presents the new certificate and `kubectl logs`
of its pod still works.

Three nodes, as test_join: a test home's /24 pod range is then cut into four /26s, one left for the machine."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509

from pkctl.cluster.components import BY_NAME
from pklib.api.certificates import subject_of
from tests.e2e.helpers import Cluster, joining_machine, kubectl, local_cluster, make_namespace, on_machine
from tests.e2e.test_join import join_args
from tests.e2e.test_nodes import ready_nodes
from tests.util import unique, wait_for_sync as wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="the control plane has not landed in this build"),
]
LIFETIME = 60  # seconds: renewal at 70-90 % leaves 6-18 s for the CSR round trip on a loaded machine


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster("--nodes", "3", "--cluster-signing-duration", f"{LIFETIME}s", sysctls_kept=True) as c:
        yield c


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _served(ip: str, port: int) -> x509.Certificate:
    """The certificate the kubelet API presents to a new connection."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _kubelet_pid(netns: str, home: Path) -> str:
    status = on_machine(netns, "cluster", "status", "--home", str(home)).stdout
    return next(r[2] for r in map(str.split, status.splitlines()) if r[:2] == ["kubelet", "Running"])


def test_a_joined_node_renews_its_certificates_while_running(cluster: Cluster) -> None:
    with joining_machine(cluster.config()) as (netns, ip):
        url, token, ca_hash = join_args(cluster)
        node = unique("rotated")
        home = Path(tempfile.mkdtemp(prefix="pkt-rot-")) / "node"
        pki = home / "pki"
        try:
            p = on_machine(netns, "cluster", "join", url, "--token", token, "--ca-hash", ca_hash, "--home",
                           str(home), "--node-name", node, "--wait-timeout", "90")
            assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
            ca = _cert(pki / "ca.crt")
            first_client = _cert(pki / "kubelet-client.crt")
            life = first_client.not_valid_after_utc - first_client.not_valid_before_utc
            assert dt.timedelta(seconds=LIFETIME) < life <= dt.timedelta(seconds=LIFETIME * 1.1)
            assert wait_for(lambda: ready_nodes(cluster).get(node), timeout=60) == ip
            port = int(json.loads((home / "config.json").read_text())["kubelet_port"])

            def cluster_signed() -> x509.Certificate | None:  # the first serving certificate of the cluster CA
                cert = _served(ip, port)
                return cert if cert.issuer == ca.subject and cert.not_valid_after_utc - cert.not_valid_before_utc \
                    < dt.timedelta(seconds=LIFETIME * 2) else None
            first_served = wait_for(cluster_signed, timeout=30, interval=0.5, message="the cluster's serving cert")
            pid = _kubelet_pid(netns, home)
            ns = make_namespace(cluster)
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rot", "namespace": ns},
                   "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
                            "containers": [{"name": "c", "image": "pkube.local/busybox:latest",
                                            "command": ["sh", "-c", "echo still here; sleep 3600"]}]}}
            code, body = cluster.api(f"/api/v1/namespaces/{ns}/pods", pod)
            assert code == 201, body

            # past the first certificates' expiry, both were replaced by valid ones of the same subject
            gone = max(first_client.not_valid_after_utc, first_served.not_valid_after_utc) + dt.timedelta(seconds=1)

            def renewed() -> tuple[x509.Certificate, x509.Certificate] | None:
                if dt.datetime.now(dt.timezone.utc) < gone:
                    return None
                return _cert(pki / "kubelet-client.crt"), _served(ip, port)
            client, served = wait_for(renewed, timeout=LIFETIME * 2, interval=0.5, message="the first certs' expiry")
            now = dt.datetime.now(dt.timezone.utc)
            for new, old in ((client, first_client), (served, first_served)):
                assert new.serial_number != old.serial_number and new.issuer == ca.subject
                assert subject_of(new) == subject_of(old) == (f"system:node:{node}", ["system:nodes"])
                assert new.not_valid_before_utc <= now < new.not_valid_after_utc
                assert new.public_key() != old.public_key()
            assert served.serial_number == _cert(pki / "kubelet.crt").serial_number  # reloaded, not restarted
            assert (os.stat(pki / "kubelet-client.key").st_mode & 0o777) == 0o600
            assert _kubelet_pid(netns, home) == pid
            # the renewal was asked by the node itself and auto-approved
            _, csrs = cluster.api("/apis/certificates.k8s.io/v1/certificatesigningrequests")
            renewals = [c for c in csrs["items"] if c["spec"]["username"] == f"system:node:{node}"
                        and c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"]
            assert renewals and renewals[0]["status"]["conditions"][0]["reason"] == "AutoApproved"
            # the node keeps working with what it holds now: Ready, its kubeconfig authenticates, logs are served
            assert ready_nodes(cluster).get(node) == ip
            kc = subprocess.run(["kubectl", "--kubeconfig", str(home / "kubelet.kubeconfig"), "get", "node", node,
                                 "-o", "name"], capture_output=True, text=True, timeout=30)
            assert kc.returncode == 0 and kc.stdout.strip() == f"node/{node}", kc.stderr

            def logged() -> subprocess.CompletedProcess[str] | None:
                p = kubectl(cluster, "logs", "-n", ns, "rot")
                return p if p.returncode == 0 else None
            assert wait_for(logged, timeout=30, interval=0.5, message="kubectl logs").stdout == "still here\n"

            def lease_renewed() -> dict[str, Any] | None:
                _, lease = cluster.api(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}")
                when = dt.datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))
                return lease if when > gone else None
            wait_for(lease_renewed, timeout=30, interval=0.5, message="the node's lease renewed past the expiry")
            cluster.api(f"/api/v1/namespaces/{ns}", method="DELETE")
        finally:
            if (home / "config.json").exists():
                down = on_machine(netns, "cluster", "down", "--purge", "--home", str(home))
                assert down.returncode == 0, f"{down.stdout}\n{down.stderr}"
            shutil.rmtree(home.parent, ignore_errors=True)
            cluster.api(f"/api/v1/nodes/{node}", method="DELETE")
