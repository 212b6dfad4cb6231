"""pkctl with Ingresses against the real apiserver: `get ingress` columns (shared with the server's Table) and
`describe ingress` (kubectl's layout: class, default backend, TLS, the rules as Host/Path/Backends)."""
from __future__ import annotations

from pklib.client import Client
from pklib.resources import INGRESSES
from tests.support.pkctl import Pkctl


async def test_get_and_describe_ingress(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await client.create(INGRESSES, {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"ingressClassName": "pkube",
                 "defaultBackend": {"service": {"name": "fallback", "port": {"name": "http"}}},
                 "tls": [{"hosts": ["web.example.com"], "secretName": "web-tls"}],
                 "rules": [{"host": "web.example.com", "http": {"paths": [
                     {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api",
                                                                                   "port": {"number": 8080}}}}]}}]}},
        namespace)
    got = pkctl("get", "ing")
    assert got.returncode == 0, got.stderr
    head, row = got.stdout.splitlines()
    assert head.split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert row.split()[:5] == ["web", "pkube", "web.example.com", "80,", "443"]
    out = pkctl("describe", "ingress", "web")
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert ["Ingress", "Class:", "pkube"] in lines
    assert ["Default", "backend:", "fallback:http"] in lines
    assert ["web-tls", "terminates", "web.example.com"] in lines
    assert ["Host", "Path", "Backends"] in lines
    assert ["/api", "api:8080"] in lines
