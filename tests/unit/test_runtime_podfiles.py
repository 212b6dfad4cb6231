"""The pod's /etc/hosts, resolv.conf and hostname."""
from __future__ import annotations

from pathlib import Path

from kubelet.runtime.podfiles import DNSConfig, HostAlias, hosts_file, resolv_conf, write_pod_files


def test_hosts_file_has_pod_entry_fqdn_and_aliases() -> None:
    text = hosts_file("web-0", "10.244.0.5", "web-0.web.default.svc.cluster.local",
                      [HostAlias("1.2.3.4", ["foo.local", "bar.local"])])
    lines = text.splitlines()
    assert lines[0] == "# Kubernetes-managed hosts file."
    assert "127.0.0.1\tlocalhost" in lines
    assert "10.244.0.5\tweb-0.web.default.svc.cluster.local\tweb-0" in lines
    assert lines[-2:] == ["# Entries added by HostAliases.", "1.2.3.4\tfoo.local bar.local"]


def test_resolv_conf_from_pod_dns_or_host(tmp_path: Path) -> None:
    dns = DNSConfig(nameservers=["10.96.0.10"], searches=["ns.svc.cluster.local", "svc.cluster.local"],
                    options=["ndots:5"])
    assert resolv_conf(dns) == ("search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n"
                                "options ndots:5\n")
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 192.0.2.53\n")
    assert resolv_conf(None, host) == "nameserver 192.0.2.53\n"


def test_write_pod_files_returns_bind_mount_sources(tmp_path: Path) -> None:
    files = write_pod_files(tmp_path / "etc", "web-0", "10.244.0.5", dns=DNSConfig(nameservers=["10.96.0.10"]))
    assert set(files) == {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}
    assert files["/etc/hostname"].read_text() == "web-0\n"
    assert "10.244.0.5\tweb-0" in files["/etc/hosts"].read_text()
    assert files["/etc/resolv.conf"].read_text() == "nameserver 10.96.0.10\n"
