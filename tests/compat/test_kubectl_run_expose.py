"""`pkctl run` and `pkctl expose` make the objects kubectl v1.32 makes (--dry-run=client -o yaml), and what pkctl
creates is what kubectl then reads."""
from __future__ import annotations

import yaml

from tests.support.controlplane import ApiServer
from tests.support.kubectl import Kubectl
from tests.support.pkctl import run_pkctl


def both(kubectl: Kubectl, api: ApiServer, ns: str, *argv: str) -> tuple[dict, dict]:
    """(kubectl's object, pkctl's): pkctl's client-side dry run carries no namespace and no null timestamp."""
    at = argv.index("--") if "--" in argv else len(argv)  # the flags go before a command line
    argv = (*argv[:at], "--dry-run=client", "-o", "yaml", *argv[at:])
    k = yaml.safe_load(kubectl("-n", ns, *argv).stdout)
    assert k["metadata"].pop("creationTimestamp") is None and k["metadata"].pop("namespace") == ns
    p = run_pkctl("--kubeconfig", api.kubeconfig, "-n", ns, *argv)
    assert p.returncode == 0, p.stderr
    return k, yaml.safe_load(p.stdout)


def test_run_dry_run_matches_kubectl(kubectl: Kubectl, tls_apiserver: ApiServer, ns: str) -> None:
    for argv in (["run", "web", "--image", "busybox", "--port", "80", "--env", "A=1", "--env", "B=2"],
                 ["run", "job", "--image", "busybox", "--restart", "Never", "--labels", "a=b,c=d", "--", "echo", "hi"],
                 ["run", "sh", "--image", "busybox", "--restart", "OnFailure", "--command", "--", "sh", "-c", "x"]):
        theirs, ours = both(kubectl, tls_apiserver, ns, *argv)
        assert ours == theirs, argv


def test_run_creates_a_pod_kubectl_reads_and_expose_matches(kubectl: Kubectl, tls_apiserver: ApiServer,
                                                            ns: str) -> None:
    kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged")  # baseline refuses hostPorts
    p = run_pkctl("--kubeconfig", tls_apiserver.kubeconfig, "-n", ns, "run", "web", "--image", "busybox",
                  "-p", "8080:80")
    assert p.returncode == 0 and p.stdout.strip() == "pod/web created", p.stderr
    pod = yaml.safe_load(kubectl("-n", ns, "get", "pod", "web", "-o", "yaml").stdout)
    assert pod["metadata"]["labels"] == {"run": "web"}
    assert pod["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]
    kubectl("-n", ns, "create", "deployment", "app", "--image", "busybox", "--port", "8080")
    for argv in (["expose", "deployment/app", "--port", "80", "--target-port", "8080", "--type", "NodePort"],
                 ["expose", "pod", "web", "--port", "80", "--name", "websvc"]):
        theirs, ours = both(kubectl, tls_apiserver, ns, *argv)
        assert ours == theirs, argv
