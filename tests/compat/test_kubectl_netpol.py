"""kubectl v1.32 with NetworkPolicies: `apply` (created, then unchanged), `get netpol` columns, `-o json` with
Kubernetes' defaults, and a bad policy refused naming the field; `pkctl describe netpol` prints what kubectl does."""
from __future__ import annotations

import difflib
import json

from tests.support.kubectl import Kubectl
from tests.support.pkctl import run_pkctl

POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow-frontend}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: frontend}}
    - namespaceSelector: {matchLabels: {team: web}}
      podSelector: {matchLabels: {role: monitor}}
    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
    ports:
    - {protocol: TCP, port: 8080}
    - {protocol: UDP, port: 5000, endPort: 5010}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"""


def test_apply_get_networkpolicy(kubectl: Kubectl, ns: str) -> None:
    out = kubectl("apply", "-n", ns, "-f", "-", stdin=POLICY).stdout
    assert out == ("networkpolicy.networking.k8s.io/web-allow-frontend created\n"
                   "networkpolicy.networking.k8s.io/default-deny created\n")
    # (ports spell out their protocol: a list without merge key that the server defaulted differs, as in Kubernetes)
    again = kubectl("apply", "-n", ns, "-f", "-", stdin=POLICY).stdout
    assert again == ("networkpolicy.networking.k8s.io/web-allow-frontend unchanged\n"
                     "networkpolicy.networking.k8s.io/default-deny unchanged\n")

    lines = kubectl("get", "netpol", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    rows = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert rows == {"web-allow-frontend": "app=web", "default-deny": "<none>"}

    web = json.loads(kubectl("get", "networkpolicy", "web-allow-frontend", "-n", ns, "-o", "json").stdout)
    assert web["spec"]["policyTypes"] == ["Ingress"]
    assert web["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"},
                                                  {"port": 5000, "endPort": 5010, "protocol": "UDP"}]

    bad = kubectl("apply", "-n", ns, "-f", "-", ok=False,
                  stdin=POLICY.split("---")[0].replace("172.17.1.0/24", "10.0.0.0/24"))
    assert bad.returncode != 0
    assert "spec.ingress[0].from[2].ipBlock.except[0]: Invalid value: \"10.0.0.0/24\": must be a strict subset " \
           "of `cidr`" in bad.stderr
    assert kubectl("delete", "netpol", "--all", "-n", ns).returncode == 0
    # the OpenAPI documents describe the kind (kubectl explain reads them)
    explained = kubectl("explain", "networkpolicy.spec.ingress.ports").stdout
    assert "endPort" in explained and "protocol" in explained


def test_pkctl_describe_matches_kubectl(kubectl: Kubectl, ns: str) -> None:
    egress = POLICY.split("---")[0].replace("web-allow-frontend", "both-ways").replace(
        "ingress:", "policyTypes: [Ingress, Egress]\n  egress:\n  - ports: [{port: http}]\n  - to: [{podSelector: {}}]\n"
        "  ingress:")
    kubectl("apply", "-n", ns, "-f", "-", stdin=POLICY + "---\n" + egress)
    theirs = kubectl("describe", "netpol", "-n", ns)
    ours = run_pkctl("--kubeconfig", kubectl.kubeconfig, "describe", "netpol", "-n", ns)
    assert (ours.returncode, ours.stdout) == (0, theirs.stdout), "".join(
        difflib.unified_diff(theirs.stdout.splitlines(True), ours.stdout.splitlines(True)))
    assert "To Port Range: 5000-5010/UDP" in ours.stdout and "Except: 172.17.1.0/24" in ours.stdout
