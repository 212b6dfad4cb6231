"""`pkctl run` / `expose` objects from arguments: Docker's -p and -e, kubectl run's Pod and expose's Service."""
from __future__ import annotations

import pytest

from pkctl import generators
from pkctl.generators import GeneratorError, published_ports


def test_publish_forms_as_docker_takes_them() -> None:
    assert published_ports("8080:80") == [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]
    assert published_ports("127.0.0.1:5353:53/udp") == [
        {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"}]
    assert published_ports("0.0.0.0:9000-9001:80-81") == [
        {"containerPort": 80, "hostPort": 9000, "protocol": "TCP"}, {"containerPort": 81, "hostPort": 9001, "protocol": "TCP"}]
    # Compose's `ports: ["80"]`: a container port, not published.
    assert published_ports("80", require_host=False) == [{"containerPort": 80, "protocol": "TCP"}]


@pytest.mark.parametrize("spec,message", [
    ("80", "needs a host port"), ("x:80", "invalid port publication"), ("70000:80", "ports are 1-65535"),
    ("1-3:4-5", "ranges differ"), ("[::1]:80:80", "IPv4 address is expected")])
def test_bad_publish_is_refused_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(GeneratorError, match=message):
        published_ports(spec)


def test_run_pod_is_kubectl_runs_with_ports_env_and_args() -> None:
    pod = generators.pod("web", "busybox", ports=published_ports("8080:80") + [{"containerPort": 80}],
                         env=generators.env_vars(["A=1", "B=x=y", "A=2"]), command=["httpd", "-f"])
    assert pod["metadata"] == {"name": "web", "labels": {"run": "web"}}
    c = pod["spec"]["containers"][0]
    assert c["name"] == "web" and c["args"] == ["httpd", "-f"] and "command" not in c
    assert c["env"] == [{"name": "A", "value": "2"}, {"name": "B", "value": "x=y"}]
    assert c["ports"] == [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]
    assert pod["spec"]["restartPolicy"] == "Always"
    assert generators.pod("x", "i", command=["sh"], as_command=True, labels={"a": "b"})["metadata"]["labels"] == {"a": "b"}
    with pytest.raises(GeneratorError, match="invalid env"):
        generators.env_vars(["novalue"])
    with pytest.raises(GeneratorError, match="published twice"):
        generators.pod("x", "i", ports=published_ports("1:80") + published_ports("2:80"))


def test_expose_service() -> None:
    svc = generators.service_for("web", {"app": "web"}, {"app": "web"}, 80, "8080", svc_type="NodePort")
    assert svc["spec"] == {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                           "selector": {"app": "web"}, "type": "NodePort"}
    with pytest.raises(GeneratorError, match="invalid --type"):
        generators.service_for("web", {"app": "web"}, {}, 80, None, svc_type="Bogus")
