"""Pure logic of `pkctl cluster join --control-plane` (pkctl/cluster/cpjoin.py): the certificate key's encryption,
where a cluster's etcd members listen and advertise themselves, and what a joined member's home runs."""
from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from pkctl.cluster import cpjoin
from pkctl.cluster.components import components
from pkctl.cluster.home import ClusterConfig, Home, Member, add_workers
from pkctl.cluster.join import JoinError


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_files_decrypt_only_with_their_key_and_name() -> None:
    key = bytes(range(32))
    blob = cpjoin.encrypt(key, "ca.key", b"secret")
    assert cpjoin.decrypt(key, "ca.key", blob) == b"secret"
    assert cpjoin.encrypt(key, "ca.key", b"secret") != blob  # a fresh nonce each time
    with pytest.raises(InvalidTag):
        cpjoin.decrypt(bytes(32), "ca.key", blob)
    with pytest.raises(InvalidTag):  # a file stored under another name does not pass for it
        cpjoin.decrypt(key, "sa.key", blob)


def test_the_certificate_key_is_64_hex_digits() -> None:
    assert cpjoin.check_certificate_key("ab" * 32) == b"\xab" * 32
    for bad in ("ab" * 31, "zz" * 32, ""):
        with pytest.raises(JoinError, match="64 hex digits"):
            cpjoin.check_certificate_key(bad)


def test_etcd_advertises_the_cluster_network_gateway_when_there_is_one(tmp_path: Path) -> None:
    home = Home(tmp_path)
    alone = ClusterConfig(2379, 2380, 6443)
    etcd = components(alone)[0].argv(home, alone)
    assert flag(etcd, "--listen-peer-urls") == flag(etcd, "--initial-advertise-peer-urls") == "https://127.0.0.1:2380"
    cfg = ClusterConfig(2379, 2380, 6443, cluster_cidr="10.120.5.0/24")
    add_workers(cfg, tmp_path, 2)
    gw = cfg.node_gateway
    etcd = components(cfg)[0].argv(home, cfg)
    assert flag(etcd, "--listen-client-urls") == f"https://127.0.0.1:2379,https://{gw}:2379"
    assert flag(etcd, "--advertise-client-urls") == f"https://{gw}:2379"
    assert flag(etcd, "--initial-cluster") == f"pkube=https://{gw}:2380"
    assert cpjoin.shared_config(cfg)["etcdEndpoints"] == [f"https://{gw}:2379"]
    # the single control plane's controller-manager and scheduler take part in a leader election, since members
    # may join; as the members', the identity names the process and is new at every start (never shared with an
    # earlier process that may still be stopping)
    control_plane = next(c for c in components(cfg) if c.name == "control-plane")
    starts = [control_plane.argv(home, cfg) for _ in range(2)]
    identities = [{flag(g[i:], "--leader-elect-identity") for i, a in enumerate(g) if a == "--leader-elect"}
                  for g in starts]
    assert all(g.count("--leader-elect") == 2 for g in starts)
    assert all(i.startswith(f"control-plane_{cfg.node_name}_") for ids in identities for i in ids)
    assert not identities[0] & identities[1]


def test_a_joined_member_runs_etcd_apiserver_and_elected_controllers(tmp_path: Path) -> None:
    member = Member("cpj", "10.1.2.200", 2379, 2380, 6443, 10257)
    cfg = ClusterConfig(2379, 2380, 6443, members=[member], joined="https://10.1.2.1:6443", tls=True,
                        etcd_initial_cluster="pkube=https://10.1.2.1:2380,cpj=https://10.1.2.200:2380",
                        etcd_peers=["https://10.1.2.1:2379"])
    home = Home(tmp_path)
    comps = {c.name: c for c in components(cfg)}
    assert list(comps) == ["etcd-cpj", "apiserver-cpj", "control-plane-cpj"]
    etcd = comps["etcd-cpj"].argv(home, cfg)
    assert flag(etcd, "--initial-cluster-state") == "existing"
    assert flag(etcd, "--initial-cluster") == cfg.etcd_initial_cluster
    assert flag(etcd, "--listen-peer-urls") == "https://10.1.2.200:2380"
    api = comps["apiserver-cpj"].argv(home, cfg)
    assert flag(api, "--etcd-servers") == "https://10.1.2.200:2379,https://10.1.2.1:2379"
    assert flag(api, "--bind-address") == "10.1.2.200" and "--advertise-address" not in api
    assert [m.name for m in comps["control-plane-cpj"].members] == ["controller-manager", "scheduler"]
    assert cfg.api_url == "https://10.1.2.200:6443"


def test_a_cluster_without_a_cluster_network_takes_no_control_plane_member(tmp_path: Path) -> None:
    with pytest.raises(JoinError, match="listens on loopback only.*--nodes N"):
        cpjoin.upload_certs(Home(tmp_path), ClusterConfig(2379, 2380, 6443))


def test_etcd_calls_retry_a_member_that_is_not_ready_and_nothing_else() -> None:
    """Right after `cluster up`, etcd's JSON gateway answers 'transport is closing' (gRPC code 14) for a
    moment: a join asked again; an answer that is final (another code) is not asked twice."""
    import http.server
    import json
    import ssl
    import threading

    from pkctl.cluster import cpjoin

    answers = [(503, {"error": "transport is closing", "code": 14}), (200, {"members": [{"name": "cp1"}]}),
               (400, {"error": "etcdserver: member not found", "code": 5})]
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            asked.append(self.path)
            code, doc = answers.pop(0)
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert cpjoin.member_list([url], ssl.create_default_context()) == [{"name": "cp1"}]
        assert len(asked) == 2
        with pytest.raises(cpjoin.JoinError, match="member not found"):
            cpjoin.etcd_call([url], "/v3/cluster/member/remove", {"ID": "1"}, ssl.create_default_context())
        assert len(asked) == 3
    finally:
        server.shutdown()
