"""pkctl port-forward's pure parts: port specs, listen addresses, named and service port translation."""
from __future__ import annotations

from typing import Any

import pytest

from pkctl.commands.port_forward import (PortSpec, parse_addresses, parse_port_specs, pod_remote_port,
                                         service_remote_port)
from pkctl.errors import CommandError

POD: dict[str, Any] = {"metadata": {"name": "web"},
                       "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}


@pytest.mark.parametrize("spec,parsed", [
    ("5000", PortSpec(5000, "5000", False)),
    ("8888:5000", PortSpec(8888, "5000", True)),
    (":5000", PortSpec(0, "5000", True)),
    ("0:5000", PortSpec(0, "5000", True)),
    ("http", PortSpec(0, "http", False)),
    ("9000:http", PortSpec(9000, "http", True)),
])
def test_port_specs(spec: str, parsed: PortSpec) -> None:
    assert parse_port_specs([spec]) == [parsed]


@pytest.mark.parametrize("spec,message", [
    ("1:2:3", "invalid port format '1:2:3'"),
    ("80:", "invalid port format '80:'"),
    ("x:80", "error parsing local port 'x': must be a number from 0 to 65535"),
    ("70000:80", "error parsing local port '70000'"),
    ("8080:0", "remote port must be > 0"),
    ("8080:65536", "error parsing remote port '65536'"),
])
def test_bad_port_specs(spec: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_port_specs([spec])
    with pytest.raises(CommandError, match="at least 1 PORT is required"):
        parse_port_specs([])


def test_addresses() -> None:
    assert parse_addresses([]) == [("127.0.0.1", False), ("::1", False)]  # localhost: one of them is enough
    assert parse_addresses(["127.0.0.1,::1", "0.0.0.0"]) == [("0.0.0.0", True), ("127.0.0.1", True), ("::1", True)]
    with pytest.raises(CommandError, match="nope is not a valid IP"):
        parse_addresses(["127.0.0.1,nope"])


def test_named_pod_port() -> None:
    assert pod_remote_port(POD, "http") == 8080 and pod_remote_port(POD, "81") == 81
    with pytest.raises(CommandError, match="Pod 'web' does not have a named port 'ftp'"):
        pod_remote_port(POD, "ftp")


def test_service_port_translation() -> None:
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [
        {"name": "www", "port": 80, "targetPort": "http"}, {"name": "raw", "port": 81, "targetPort": 9000},
        {"name": "same", "port": 82}, {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}]}}
    # `80` alone keeps the service port as the local port; the pod's port comes from targetPort
    assert service_remote_port(svc, POD, PortSpec(80, "80", False)) == (80, 8080)
    assert service_remote_port(svc, POD, PortSpec(0, "www", False)) == (80, 8080)
    assert service_remote_port(svc, POD, PortSpec(7000, "raw", True)) == (7000, 9000)
    assert service_remote_port(svc, POD, PortSpec(0, "82", True)) == (0, 82)
    with pytest.raises(CommandError, match="Service s does not have a service port 99"):
        service_remote_port(svc, POD, PortSpec(99, "99", False))
    with pytest.raises(CommandError, match="UDP protocol is not supported for port 53"):
        service_remote_port(svc, POD, PortSpec(53, "53", False))
