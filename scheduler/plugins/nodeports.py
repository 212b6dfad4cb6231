"""NodePorts: a hostPort can be used once per (hostIP, protocol) on a node; 0.0.0.0 conflicts with every IP."""
from __future__ import annotations

from ..framework import HostPort, NodeInfo, PodInfo

REASON = "node(s) didn't have free ports for the requested pod ports"
ANY_IP = "0.0.0.0"


def _conflicts(want: HostPort, used: HostPort) -> bool:
    ip, proto, port = want
    uip, uproto, uport = used
    return port == uport and proto == uproto and (ip == uip or ip == ANY_IP or uip == ANY_IP)


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    for want in pod.host_ports:
        if any(_conflicts(want, used) for used in node.used_ports):
            return [REASON]
    return None
