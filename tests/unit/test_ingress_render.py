"""ingress/render.py: Ingress semantics in nginx terms, without nginx (tests/ingress runs the real one)."""
from __future__ import annotations

from typing import Any

from ingress.render import Options, render

CONTROLLER = "pkube.io/ingress-nginx"
OPTS = Options(80, 443, "", "/s/certs", "/s/certs/default.pem", CONTROLLER)
CLASSES = [{"metadata": {"name": "pkube"}, "spec": {"controller": CONTROLLER}},
           {"metadata": {"name": "other"}, "spec": {"controller": "example.com/other"}}]
SERVICE = {"metadata": {"namespace": "ns", "name": "web"},
           "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
SLICE = {"metadata": {"namespace": "ns", "name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
         "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": True}},
                       {"addresses": ["10.1.0.6"], "conditions": {"ready": False}},
                       {"addresses": ["10.1.0.7"]}]}


def ing(name: str, *paths: tuple[str, str, str], cls: str = "pkube", created: str = "2026-01-01T00:00:00Z",
        host: str = "web.test", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "creationTimestamp": created},
            "spec": {"ingressClassName": cls, "rules": [{"host": host, "http": {"paths": [
                {"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}
                for p, t, s in paths]}}], **spec}}


def test_only_ingresses_of_our_class_are_served() -> None:
    out = render([ing("mine", ("/", "Prefix", "web")), ing("theirs", ("/", "Prefix", "web"), cls="other",
                                                              host="theirs.test"),
                  ing("none", ("/", "Prefix", "web"), cls="", host="none.test")],
                 CLASSES, [SERVICE], [SLICE], [], OPTS)
    assert [i["metadata"]["name"] for i in out.served] == ["mine"]
    assert '"web.test"' in out.config and "theirs.test" not in out.config and "none.test" not in out.config


def test_path_types_and_ready_endpoints() -> None:
    out = render([ing("i", ("/exact", "Exact", "web"), ("/app/", "Prefix", "web"), ("/impl", "ImplementationSpecific",
                                                                                    "web"),
                      ("/gone", "Prefix", "missing"))], CLASSES, [SERVICE], [SLICE], [], OPTS)
    c = out.config
    assert 'location = "/exact" { proxy_pass http://ns-web-80; }' in c
    assert 'location = "/app" { proxy_pass' in c and 'location "/app/" { proxy_pass' in c
    assert 'location "/impl" { proxy_pass' in c
    assert 'location = "/gone" { return 503; }' in c  # no such Service: nothing ready
    assert "server 10.1.0.5:8080" in c and "server 10.1.0.7:8080" in c and "10.1.0.6" not in c
    assert 'location "/" { return 404; }' in c


def test_the_oldest_ingress_wins_a_conflict_and_default_backend() -> None:
    other = {**SERVICE, "metadata": {"namespace": "ns", "name": "old"}}
    other_slice = {**SLICE, "metadata": {"namespace": "ns", "name": "old-1",
                                         "labels": {"kubernetes.io/service-name": "old"}}}
    out = render([ing("new", ("/", "Prefix", "web"), created="2026-02-01T00:00:00Z"),
                  ing("old", ("/", "Prefix", "old"), created="2026-01-01T00:00:00Z",
                      defaultBackend={"service": {"name": "web", "port": {"name": "http"}}})],
                 CLASSES, [SERVICE, other], [SLICE, other_slice], [], OPTS)
    host = out.config.split('server_name "web.test";')[1]
    assert 'location "/" { proxy_pass http://ns-old-80; }' in host
    default = out.config.split("server_name _;")[1].split("}")[0]
    assert "proxy_pass http://ns-web-http;" in default


def test_tls_host_without_a_usable_secret_uses_the_default_certificate_and_redirects() -> None:
    out = render([ing("i", ("/", "Prefix", "web"), tls=[{"hosts": ["web.test"], "secretName": "nope"}])],
                 CLASSES, [SERVICE], [SLICE], [], OPTS)
    assert out.warnings == ["secret ns/nope not found: using the default certificate"]
    assert [(reason, i["metadata"]["name"]) for i, reason, _ in out.problems] == [("InvalidTLSSecret", "i")]
    assert "return 308 https://$host$request_uri;" in out.config
    assert out.config.count('ssl_certificate "/s/certs/default.pem";') == 2


def test_wildcard_host_matches_one_label() -> None:
    out = render([ing("i", ("/", "Prefix", "web"), host="*.apps.test")], CLASSES, [SERVICE], [SLICE], [], OPTS)
    assert 'server_name "~^[^.]+\\\\.apps\\\\.test$";' in out.config
