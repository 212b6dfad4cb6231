"""End to end: `pkctl cluster join --control-plane` and `join --network-backend`. Fresh "machines" (network
namespaces on the cluster network of a running `pkctl cluster up --nodes 3 --network-backend vxlan`) join:
one as a control-plane member with only a token, the CA's hash and the certificate key printed by
`cluster token create --control-plane` (the control-plane certificates come encrypted from the cluster), whose
etcd becomes a voting member and whose apiserver serves the cluster's data; one as a worker with a VXLAN device
whose pods reach the other nodes' pods. A wrong key and a worker's token are refused with one line.

Three nodes: a test home's /24 pod range is then cut into four /26s, one left for the worker that joins."""
from __future__ import annotations

import base64
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from pkctl.cluster import cpjoin
from pkctl.cluster.components import BY_NAME, etcd_client_context
from pkctl.cluster.home import Home
from tests.e2e.helpers import (Cluster, joining_machine, local_cluster, make_namespace, no_traceback, on_machine,
                               run)
from tests.e2e.test_nodes import pkctl, ready_nodes, run_servers
from tests.util import unique, wait_for_sync as wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="the control plane has not landed in this build"),
]
JOIN = re.compile(r"pkctl cluster join (https://\S+) --token (\S+) --ca-hash (sha256:[0-9a-f]{64})"
                  r"(?: --control-plane --certificate-key ([0-9a-f]{64}))?")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster("--nodes", "3", "--network-backend", "vxlan", sysctls_kept=True) as c:
        yield c


@pytest.fixture(scope="module")
def machine(cluster: Cluster) -> Iterator[tuple[str, str]]:
    with joining_machine(cluster.config(), host=201) as m:
        yield m


def join_args(cluster: Cluster, *flags: str) -> list[str]:
    """[URL, token, CA hash(, certificate key)] from the join command `token create` prints."""
    out = run("cluster", "token", "create", *flags, "--home", str(cluster.home)).stdout.strip()
    m = JOIN.fullmatch(out)
    assert m and bool(m.group(4)) == ("--control-plane" in flags), out
    return [g for g in m.groups() if g]


def etcd_members(cluster: Cluster) -> list[dict[str, Any]]:
    home = Home(cluster.home)
    return cpjoin.member_list(home.load_config().etcd_urls, etcd_client_context(home))


def test_control_plane_join_refuses_a_wrong_key_and_a_worker_token(cluster: Cluster, machine: tuple[str, str]) -> None:
    netns, _ = machine
    url, token, ca_hash, key = join_args(cluster, "--control-plane")
    # the certificates are stored encrypted: the CA key is nowhere in the Secret in the clear
    code, secret = cluster.api(f"/api/v1/namespaces/kube-system/secrets/{cpjoin.CERTS_SECRET}")
    assert code == 200 and set(secret["data"]) >= {"ca.key", "sa.key", "tokens.csv"}
    assert all(b"PRIVATE KEY" not in base64.b64decode(v) for v in secret["data"].values())
    home = Path(tempfile.mkdtemp(prefix="pkt-cpjoin-")) / "member"
    wrong = ("0" if key[0] != "0" else "1") + key[1:]
    base = ["cluster", "join", url, "--ca-hash", ca_hash, "--home", str(home), "--node-name", "refused"]
    p = on_machine(netns, *base, "--token", token, "--control-plane", "--certificate-key", wrong)
    assert p.returncode == 1 and no_traceback(p), p.stderr
    assert p.stderr.startswith("error: the certificate key does not decrypt kube-system/pkube-certs")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    worker_url, worker_token, _ = join_args(cluster)
    p = on_machine(netns, *base, "--token", worker_token, "--control-plane", "--certificate-key", key)
    assert p.returncode == 1 and "may not read the control-plane certificates" in p.stderr, p.stderr
    p = on_machine(netns, *base, "--token", token, "--control-plane")
    assert p.returncode == 1 and "--control-plane needs --certificate-key" in p.stderr, p.stderr
    p = run("cluster", *base[1:], "--token", token, "--certificate-key", key, check=False)
    assert p.returncode == 1 and p.stderr == "error: --certificate-key is for a control-plane member: add " \
        "--control-plane\n", p.stderr
    assert not home.exists() and len(etcd_members(cluster)) == 1
    shutil.rmtree(home.parent)


def member_api(member: dict[str, Any], cluster: Cluster, path: str, body: dict[str, Any] | None = None
               ) -> tuple[int, dict[str, Any]]:
    """A request to the joined member's own apiserver (the cluster's CA and admin token)."""
    req = urllib.request.Request(f"https://{member['host']}:{member['api_port']}{path}",
                                 data=json.dumps(body).encode() if body else None, method="POST" if body else "GET",
                                 headers={"Authorization": f"Bearer {cluster.token()}",
                                          "Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=str(cluster.home / "pki" / "ca.crt"))
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            data = r.read()
            return r.status, json.loads(data) if data.startswith(b"{") else {"text": data.decode()}
    except urllib.error.HTTPError as e:
        return e.code, {}


def test_a_machine_joins_as_a_control_plane_member(cluster: Cluster, machine: tuple[str, str]) -> None:
    netns, ip = machine
    url, token, ca_hash, key = join_args(cluster, "--control-plane")
    name = unique("cpj")
    home = Path(tempfile.mkdtemp(prefix="pkt-cpjoin-")) / "member"
    try:
        p = on_machine(netns, "cluster", "join", url, "--token", token, "--ca-hash", ca_hash, "--control-plane",
                       "--certificate-key", key, "--home", str(home), "--node-name", name, "--wait-timeout", "90")
        assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
        assert "promoted to a voting member" in p.stdout and f"apiserver-{name} ready" in p.stdout, p.stdout
        # etcd: a voting, healthy member at the machine's address
        members = {m.get("name"): m for m in etcd_members(cluster)}
        assert set(members) == {"pkube", name} and not members[name].get("isLearner"), members
        member = json.loads((home / "config.json").read_text())["members"][0]
        assert member["host"] == ip and members[name]["clientURLs"] == [f"https://{ip}:{member['etcd_client_port']}"]
        health = cpjoin.etcd_call(members[name]["clientURLs"], "/v3/maintenance/status", {},
                                  etcd_client_context(Home(cluster.home)))
        assert health["leader"] and health["raftIndex"], health
        # its apiserver is ready and shares the cluster's data both ways
        assert member_api(member, cluster, "/readyz")[0] == 200
        ns = make_namespace(cluster)
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "via-member"}, "data": {"k": "v"}}
        code, body = member_api(member, cluster, f"/api/v1/namespaces/{ns}/configmaps", cm)
        assert code == 201, body
        code, got = cluster.api(f"/api/v1/namespaces/{ns}/configmaps/via-member")
        assert code == 200 and got["data"] == {"k": "v"}
        assert member_api(member, cluster, "/api/v1/nodes")[1]["items"]
        # kubectl works against it with the member's admin kubeconfig (its serving certificate names its address)
        r = subprocess.run(["kubectl", "--kubeconfig", str(home / "kubeconfig"), "get", "configmap", "-n", ns,
                            "via-member", "-o", "jsonpath={.data.k}"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout == "v", r.stderr
        status = on_machine(netns, "cluster", "status", "--home", str(home))
        assert f"Control-plane member {name} joined to {url}" in status.stdout, status.stdout
        rows = {r[0]: r[1] for r in map(str.split, status.stdout.splitlines()) if r}
        assert all(rows.get(f"{c}-{name}") == "Running" for c in ("etcd", "apiserver", "control-plane")), status.stdout
        cluster.api(f"/api/v1/namespaces/{ns}", method="DELETE")
    finally:
        down = on_machine(netns, "cluster", "down", "--purge", "--home", str(home)) \
            if (home / "config.json").exists() else None
        shutil.rmtree(home.parent, ignore_errors=True)
        assert down is None or (down.returncode == 0 and f"removed etcd member {name}" in down.stdout), \
            f"{down.stdout}\n{down.stderr}"
    assert [m.get("name") for m in etcd_members(cluster)] == ["pkube"]
    assert cluster.api("/api/v1/namespaces/default")[0] == 200  # the cluster writes and reads on alone


def test_a_worker_joins_with_the_vxlan_backend(cluster: Cluster) -> None:
    url, token, ca_hash = join_args(cluster)
    cfg = cluster.config()
    node = unique("vx")
    home = Path(tempfile.mkdtemp(prefix="pkt-join-")) / "node"
    with joining_machine(cfg, host=202) as (netns, ip):
        try:
            p = on_machine(netns, "cluster", "join", url, "--token", token, "--ca-hash", ca_hash, "--home", str(home),
                           "--node-name", node, "--network-backend", "vxlan", "--wait-timeout", "90")
            assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
            assert wait_for(lambda: ready_nodes(cluster).get(node), timeout=60) == ip
            device = f"pkube.{cfg['vxlan_vni']}"
            link = json.loads(on_ip(netns, "-j", "-d", "link", "show", device))
            assert link[0]["linkinfo"]["info_kind"] == "vxlan" and link[0]["linkinfo"]["info_data"]["id"] == \
                cfg["vxlan_vni"]
            ns = make_namespace(cluster)
            ips = run_servers(cluster, ns, {"joined": (node, {}), "first": (cfg["node_name"], {})})
            request = f"printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ips['first']} 8080"

            def answer() -> str | None:
                p = pkctl(cluster, "-n", ns, "exec", "joined", "--", "sh", "-c", request, check=False)
                return p.stdout if "200 OK" in p.stdout else None
            out = wait_for(answer, timeout=30, message="the joined node's pod to reach a pod on the first node")
            assert out.split()[-1].removeprefix("[").removesuffix("]").removeprefix("::ffff:") == ips["joined"], out
            cluster.api(f"/api/v1/namespaces/{ns}", method="DELETE")
        finally:
            down = on_machine(netns, "cluster", "down", "--purge", "--home", str(home)) \
                if (home / "config.json").exists() else None
            shutil.rmtree(home.parent, ignore_errors=True)
            cluster.api(f"/api/v1/nodes/{node}", method="DELETE")
            assert down is None or down.returncode == 0, f"{down.stdout}\n{down.stderr}"


def on_ip(netns: str, *argv: str) -> str:
    p = subprocess.run(["ip", "-n", netns, *argv], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout
