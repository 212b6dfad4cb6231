"""kubectl v1.32 with Ingresses and IngressClasses: `create ingress` (a protobuf body), `apply`, `get ingress`
/ `get ing` columns, `get ingressclass`, and a bad Ingress refused naming the field."""
from __future__ import annotations

import json

from tests.support.kubectl import Kubectl
from tests.util import unique

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: %(cls)s
  tls: [{hosts: [web.example.com], secretName: web-tls}]
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - host: api.example.com
    http:
      paths:
      - {path: /v1, pathType: Exact, backend: {service: {name: api, port: {name: http}}}}
"""


def test_create_apply_get_ingress(kubectl: Kubectl, ns: str) -> None:
    cls = unique("cls")
    kubectl("apply", "-f", "-", stdin=f"apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n"
                                      f"  name: {cls}\nspec:\n  controller: example.com/ingress\n")
    try:
        assert kubectl("apply", "-n", ns, "-f", "-", stdin=INGRESS % {"cls": cls}).stdout == \
            "ingress.networking.k8s.io/web created\n"
        out = kubectl("create", "ingress", "simple", "-n", ns, f"--class={cls}",
                      "--rule=foo.example.com/bar*=svc1:8080,tls=my-cert").stdout
        assert out == "ingress.networking.k8s.io/simple created\n"
        simple = json.loads(kubectl("get", "ing", "simple", "-n", ns, "-o", "json").stdout)
        assert simple["spec"]["rules"] == [{"host": "foo.example.com", "http": {"paths": [
            {"path": "/bar", "pathType": "Prefix", "backend": {"service": {"name": "svc1",
                                                                        "port": {"number": 8080}}}}]}}]
        assert simple["spec"]["tls"] == [{"hosts": ["foo.example.com"], "secretName": "my-cert"}]

        lines = kubectl("get", "ingress", "-n", ns).stdout.splitlines()
        assert lines[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
        rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
        assert rows["web"][:4] == [cls, "web.example.com,api.example.com", "80,", "443"]
        assert rows["simple"][:4] == [cls, "foo.example.com", "80,", "443"]
        classes = kubectl("get", "ingressclass", cls).stdout.splitlines()
        assert classes[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
        assert classes[1].split()[:3] == [cls, "example.com/ingress", "<none>"]

        bad = kubectl("apply", "-n", ns, "-f", "-", ok=False,
                      stdin=INGRESS.replace("pathType: Exact", "pathType: Regex") % {"cls": cls})
        assert bad.returncode != 0
        assert 'spec.rules[1].http.paths[0].pathType: Unsupported value: "Regex"' in bad.stderr
    finally:
        kubectl("delete", "ingressclass", cls)
