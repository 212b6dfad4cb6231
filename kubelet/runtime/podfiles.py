"""The files a pod's containers share: /etc/hosts, /etc/resolv.conf and /etc/hostname (Kubernetes-managed)."""
from __future__ import annotations

from pathlib import Path

from pklib.files import write_atomic
from kubelet.runtime.interface import DNSConfig, HostAlias

__all__ = ["HOST_RESOLV_CONF", "DNSConfig", "HostAlias", "hosts_file", "resolv_conf", "write_pod_files"]

HOST_RESOLV_CONF = Path("/etc/resolv.conf")


def hosts_file(hostname: str, ip: str, fqdn: str = "", aliases: list[HostAlias] | None = None) -> str:
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    if ip:
        lines.append(f"{ip}\t{fqdn}\t{hostname}" if fqdn else f"{ip}\t{hostname}")
    if aliases:
        lines += ["", "# Entries added by HostAliases."]
        lines += [f"{a.ip}\t{' '.join(a.hostnames)}" for a in aliases]
    return "\n".join(lines) + "\n"


def resolv_conf(dns: DNSConfig | None, host_resolv: Path = HOST_RESOLV_CONF) -> str:
    """The pod's DNS settings when given, otherwise the host's file (dnsPolicy: Default)."""
    if dns is None:
        try:
            return host_resolv.read_text()
        except FileNotFoundError:
            return ""
    lines = []
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    lines += [f"nameserver {ns}" for ns in dns.nameservers]
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def write_pod_files(directory: Path, hostname: str, ip: str, fqdn: str = "",
                    aliases: list[HostAlias] | None = None, dns: DNSConfig | None = None) -> dict[str, Path]:
    """Write the three files under `directory`; returns container path -> host path for bind mounts."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "/etc/hosts": (directory / "hosts", hosts_file(hostname, ip, fqdn, aliases)),
        "/etc/resolv.conf": (directory / "resolv.conf", resolv_conf(dns)),
        "/etc/hostname": (directory / "hostname", hostname + "\n"),
    }
    for path, text in files.values():
        write_atomic(path, text)
    return {target: path for target, (path, _) in files.items()}
