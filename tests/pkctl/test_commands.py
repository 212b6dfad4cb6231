"""describe, scale, create and delete through pkctl, against the real apiserver."""
from __future__ import annotations

from pathlib import Path

from pklib.client import Client
from pklib.errors import ApiError
from tests.support.controlplane import ApiServer
from tests.support.pkctl import kind, Pkctl, run_pkctl
from tests.util import free_port, unique, wait_for

CONFIGMAPS = kind("configmaps")
DEPLOYMENTS = kind("deployments")
EVENTS = kind("events")
NAMESPACES = kind("namespaces")


def deployment(name: str, replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}


def event(name: str, namespace: str, about: dict, reason: str, message: str) -> dict:
    meta = about["metadata"]
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": about["kind"], "name": meta["name"], "namespace": namespace, "uid": meta["uid"],
                               "apiVersion": about["apiVersion"]},
            "reason": reason, "message": message, "type": "Normal", "count": 1,
            "firstTimestamp": meta["creationTimestamp"], "lastTimestamp": meta["creationTimestamp"],
            "source": {"component": "deployment-controller"}}


async def test_describe_shows_the_object_and_only_its_events(pkctl: Pkctl, client: Client, namespace: str) -> None:
    web = await client.create(DEPLOYMENTS, deployment("web", replicas=3), namespace)
    web.setdefault("kind", "Deployment")
    web.setdefault("apiVersion", "apps/v1")
    other = await client.create(DEPLOYMENTS, deployment("other"), namespace)
    other.setdefault("kind", "Deployment")
    other.setdefault("apiVersion", "apps/v1")
    await client.create(EVENTS, event("web.1", namespace, web, "ScalingReplicaSet", "Scaled up to 3"), namespace)
    await client.create(EVENTS, event("other.1", namespace, other, "Unrelated", "not about web"), namespace)
    out = pkctl("describe", "deployment", "web")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["Name:", "web"]
    assert lines[1].split() == ["Namespace:", namespace]
    assert ["Labels:", "app=web"] in [line.split() for line in lines]
    assert any(line.startswith("Replicas:") and "3 desired" in line for line in lines)
    assert "Events:" in lines
    assert any("ScalingReplicaSet" in line and "Scaled up to 3" in line and "deployment-controller" in line
               for line in lines)
    assert "not about web" not in out.stdout

    missing = pkctl("describe", "deploy", "nope")
    assert missing.returncode == 1
    assert missing.stderr == 'Error from server (NotFound): deployments.apps "nope" not found\n'


async def test_scale_through_the_scale_subresource(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await client.create(DEPLOYMENTS, deployment("web"), namespace)
    out = pkctl("scale", "deployment/web", "--replicas", "4")
    assert (out.returncode, out.stdout) == (0, "deployment.apps/web scaled\n"), out.stderr
    assert (await client.get(DEPLOYMENTS, "web", namespace))["spec"]["replicas"] == 4
    assert pkctl("scale", "deploy", "web", "--replicas=0").stdout == "deployment.apps/web scaled\n"
    assert (await client.get(DEPLOYMENTS, "web", namespace))["spec"]["replicas"] == 0

    wrong = pkctl("scale", "deploy/web", "--replicas", "2", "--current-replicas", "5")
    assert (wrong.returncode, wrong.stderr) == (1, "error: Expected replicas to be 5, was 0\n")
    assert pkctl("scale", "deploy/web", "--replicas", "2", "--current-replicas", "0").returncode == 0
    assert (await client.get(DEPLOYMENTS, "web", namespace))["spec"]["replicas"] == 2

    assert pkctl("scale", "daemonset/x", "--replicas", "1").stderr.startswith("error: daemonsets.apps cannot be scaled")
    assert pkctl("scale", "deploy/web").stderr.startswith("error: The --replicas=COUNT flag is required")
    gone = pkctl("scale", "deploy/nope", "--replicas", "1")
    assert (gone.returncode, gone.stderr) == (1, 'Error from server (NotFound): deployments.apps "nope" not found\n')


async def test_create_namespace_and_from_file(pkctl: Pkctl, client: Client, namespace: str, tmp_path: Path) -> None:
    name = unique("pkctl-ns")
    try:
        out = pkctl("create", "namespace", name, ns=None)
        assert (out.returncode, out.stdout) == (0, f"namespace/{name} created\n"), out.stderr
        assert (await client.get(NAMESPACES, name))["metadata"]["name"] == name
        again = pkctl("create", "ns", name, ns=None)
        assert again.returncode == 1
        assert again.stderr == f'Error from server (AlreadyExists): namespaces "{name}" already exists\n'
    finally:
        await client.delete(NAMESPACES, name)
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made}\ndata: {k: v}\n")
    assert pkctl("create", "-f", str(f)).stdout == "configmap/made created\n"
    made = await client.get(CONFIGMAPS, "made", namespace)
    assert made["data"] == {"k": "v"}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (made["metadata"].get("annotations") or {})
    dup = pkctl("create", "-f", str(f))
    assert dup.returncode == 1
    assert dup.stderr == (f'Error from server (AlreadyExists): error when creating "{f}": '
                          'configmaps "made" already exists\n')


async def test_delete_by_name_label_all_and_file(pkctl: Pkctl, client: Client, namespace: str, tmp_path: Path) -> None:
    for name, app in (("a", "web"), ("b", "web"), ("c", "db"), ("d", "db")):
        await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": name, "labels": {"app": app}}}, namespace)

    async def names() -> list[str]:
        return [o["metadata"]["name"] for o in (await client.list(CONFIGMAPS, namespace))["items"]]

    async def names_are(expected: list[str]) -> bool:
        return await names() == expected

    by_label = pkctl("delete", "cm", "-l", "app=web")
    assert (by_label.returncode, by_label.stdout) == (0, 'configmap "a" deleted\nconfigmap "b" deleted\n')
    assert await names() == ["c", "d"]
    # Orphaning is the garbage collector's job (it removes the `orphan` finalizer): do not wait for it here.
    by_name = pkctl("delete", "configmap/c", "--cascade=orphan", "--wait=false")
    assert by_name.stdout == 'configmap "c" deleted\n'
    assert (await client.get(CONFIGMAPS, "c", namespace))["metadata"]["finalizers"] == ["orphan"]
    await client.patch(CONFIGMAPS, "c", {"metadata": {"finalizers": None}}, namespace)
    await wait_for(lambda: names_are(["d"]), message="c gone once its finalizer is removed")
    missing = pkctl("delete", "cm", "c", "d")
    assert missing.returncode == 1
    assert missing.stdout == 'configmap "d" deleted\n'
    assert missing.stderr == 'Error from server (NotFound): configmaps "c" not found\n'
    assert await names() == []
    assert pkctl("delete", "cm", "--all").stdout == "No resources found\n"

    f = tmp_path / "cms.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: e}\n---\n"
                 "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: f}\n")
    assert pkctl("apply", "-f", str(f)).returncode == 0
    from_file = pkctl("delete", "-f", str(f))
    assert (from_file.returncode, from_file.stdout) == (0, 'configmap "e" deleted\nconfigmap "f" deleted\n')
    assert await names() == []

    for bad, message in ((["cm"], "error: resource(s) were provided, but no name was specified\n"),
                         (["cm", "x", "--all"],
                          "error: name cannot be provided when a selector or --all is specified\n"),
                         (["cm", "--all", "--cascade", "sideways"], 'error: invalid cascade value (sideways). Must be '
                                                                    '"background", "foreground", or "orphan".\n')):
        out = pkctl("delete", *bad)
        assert (out.returncode, out.stderr) == (1, message)


async def test_delete_waits_for_finalizers(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, namespace)
    no_wait = pkctl("delete", "cm", "held", "--wait=false")
    assert (no_wait.returncode, no_wait.stdout) == (0, 'configmap "held" deleted\n')
    held = await client.get(CONFIGMAPS, "held", namespace)
    assert held["metadata"].get("deletionTimestamp"), "a finalizer keeps the object, marked for deletion"
    timed_out = pkctl("delete", "cm", "held", "--timeout", "1")
    assert timed_out.returncode == 1 and "timed out waiting" in timed_out.stderr
    await client.patch(CONFIGMAPS, "held", {"metadata": {"finalizers": None}}, namespace)
    try:
        await client.get(CONFIGMAPS, "held", namespace)
        raise AssertionError("the object should be gone once its finalizer is removed")
    except ApiError as e:
        assert e.code == 404


def test_connection_and_configuration_errors(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    refused = run_pkctl("--server", f"http://127.0.0.1:{port}", "get", "pods")
    assert refused.returncode == 1
    assert refused.stderr == (f"The connection to the server 127.0.0.1:{port} was refused - "
                              "did you specify the right host or port?\n")
    nothing = run_pkctl("get", "pods", env={"KUBECONFIG": "", "HOME": str(tmp_path), "PKUBE_HOME": str(tmp_path)})
    assert nothing.returncode == 1
    assert "pkctl cluster up" in nothing.stderr and "--server" in nothing.stderr
    missing = run_pkctl("--kubeconfig", str(tmp_path / "nope"), "get", "pods")
    assert missing.returncode == 1 and missing.stderr.startswith("error: cannot read kubeconfig")


async def test_graceful_and_forced_pod_deletion(pkctl: Pkctl, client: Client, namespace: str) -> None:
    pods = kind("pods")
    # A pod bound to a node is only marked: the node's kubelet finishes a graceful deletion.
    await client.create(pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                               "spec": {"nodeName": unique("node"), "containers": [{"name": "c", "image": "busybox"}]}},
                        namespace)
    graceful = pkctl("delete", "pod", "p", "--grace-period", "20", "--wait=false")
    assert (graceful.returncode, graceful.stdout) == (0, 'pod "p" deleted\n'), graceful.stderr
    assert (await client.get(pods, "p", namespace))["metadata"]["deletionGracePeriodSeconds"] == 20
    assert pkctl("get", "pods").stdout.splitlines()[1].split()[2] == "Terminating"
    forced = pkctl("delete", "pod", "p", "--grace-period=0", "--force")
    assert (forced.returncode, forced.stdout) == (0, 'pod "p" force deleted\n'), forced.stderr
    assert forced.stderr.startswith("Warning: Immediate deletion does not wait")
    try:
        await client.get(pods, "p", namespace)
        raise AssertionError("a forced deletion removes the pod at once")
    except ApiError as e:
        assert e.code == 404


async def test_context_namespace_is_the_default(apiserver: ApiServer, client: Client, namespace: str,
                                                tmp_path: Path) -> None:
    from pklib import kubeconfig
    kc = tmp_path / "kubeconfig"
    kubeconfig.write(kc, kubeconfig.build(apiserver.url, apiserver.token, namespace=namespace))
    out = run_pkctl("apply", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: here}\n",
                    env={"KUBECONFIG": str(kc)})
    assert (out.returncode, out.stdout) == (0, "configmap/here created\n"), out.stderr
    assert (await client.get(CONFIGMAPS, "here", namespace))["metadata"]["namespace"] == namespace
    listed = run_pkctl("--kubeconfig", str(kc), "get", "cm", "-o", "name")
    assert listed.stdout == "configmap/here\n"
    # --server and --token work without any kubeconfig.
    direct = run_pkctl("--server", apiserver.url, "--token", apiserver.token, "-n", namespace, "get", "cm", "here",
                       "-o", "name", env={"KUBECONFIG": "", "HOME": str(tmp_path), "PKUBE_HOME": str(tmp_path)})
    assert (direct.returncode, direct.stdout) == (0, "configmap/here\n"), direct.stderr


async def test_create_from_arguments(pkctl: Pkctl, client: Client, namespace: str, tmp_path: Path) -> None:
    out = pkctl("create", "deployment", "web", "--image", "busybox:1.36", "--replicas", "2", "--", "sleep", "3600")
    assert (out.returncode, out.stdout) == (0, "deployment.apps/web created\n"), out.stderr
    web = await client.get(DEPLOYMENTS, "web", namespace)
    assert web["spec"]["replicas"] == 2 and web["spec"]["selector"]["matchLabels"] == {"app": "web"}
    [container] = web["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["image"], container["command"]) == ("busybox", "busybox:1.36",
                                                                             ["sleep", "3600"])
    (tmp_path / "app.conf").write_text("level=debug\n")
    cm = pkctl("create", "configmap", "cfg", "--from-literal", "mode=fast", "--from-file", str(tmp_path / "app.conf"))
    assert cm.stdout == "configmap/cfg created\n", cm.stderr
    assert (await client.get(CONFIGMAPS, "cfg", namespace))["data"] == {"mode": "fast", "app.conf": "level=debug\n"}
    secret = pkctl("create", "secret", "generic", "creds", "--from-literal", "password=hunter2")
    assert secret.stdout == "secret/creds created\n", secret.stderr
    stored = await client.get(kind("secrets"), "creds", namespace)
    assert stored["data"] == {"password": "aHVudGVyMg=="}
    # --dry-run=client prints and sends nothing.
    dry = pkctl("create", "cm", "dry", "--from-literal", "a=b", "--dry-run=client", "-o", "name")
    assert dry.stdout == "configmap/dry\n"
    assert [o["metadata"]["name"] for o in (await client.list(CONFIGMAPS, namespace))["items"]] == ["cfg"]
    bad = pkctl("create", "configmap", "x", "--from-literal", "nokey")
    assert (bad.returncode, bad.stderr) == (1, "error: invalid literal source nokey, expected key=value\n")


async def test_describe_node_lists_its_running_pods(pkctl: Pkctl, client: Client, namespace: str) -> None:
    nodes, pods = kind("nodes"), kind("pods")
    node = unique("node")
    await client.create(nodes, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
                                "status": {"allocatable": {"cpu": "2", "memory": "1Gi"}}})
    try:
        for name, where in (("here", node), ("elsewhere", unique("node"))):
            await client.create(pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                       "spec": {"nodeName": where, "containers": [
                                           {"name": "c", "image": "busybox",
                                            "resources": {"requests": {"cpu": "500m"}}}]}}, namespace)
        out = pkctl("describe", "node", node, ns=None)
        assert out.returncode == 0, out.stderr
        lines = [line.split() for line in out.stdout.splitlines()]
        assert ["Name:", node] == lines[0]
        assert ["Non-terminated", "Pods:", "(1", "in", "total)"] in lines
        assert [namespace, "here", "500m", "(25%)"] in [line[:4] for line in lines]
        assert ["cpu", "500m", "(25%)", "0", "(0%)"] in lines
    finally:
        for name in ("here", "elsewhere"):
            await client.delete(pods, name, namespace, grace_period_seconds=0)
        await client.delete(nodes, node)
