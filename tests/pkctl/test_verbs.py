"""kubectl's everyday verbs in pkctl (patch, wait, events, config, cluster-info, completion) against the real
apiserver, with kubectl's words and exit codes."""
from __future__ import annotations

import difflib
import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from pklib.client import Client
from tests.pkctl.test_get import CONFIGMAPS, make_configmaps, table
from tests.support.controlplane import ApiServer
from tests.support.kubectl import Kubectl, Stream
from tests.support.pkctl import ROOT, Pkctl, kind, run_pkctl
from tests.util import unique

PODS, EVENTS = kind("pods"), kind("events")


def pod(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def start_pkctl(apiserver: ApiServer, namespace: str, *args: str) -> subprocess.Popen[str]:
    """A long-running pkctl (wait, events -w)."""
    return subprocess.Popen([sys.executable, "-m", "pkctl.main", "--kubeconfig", apiserver.kubeconfig,
                             "-n", namespace, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


async def test_patch_strategic_merge_json_status_and_errors(pkctl: Pkctl, client: Client, namespace: str,
                                                           tmp_path: Path) -> None:
    await make_configmaps(client, namespace)
    out = pkctl("patch", "configmap", "alpha", "-p", '{"data": {"k0": "new", "extra": "x"}}')
    assert (out.returncode, out.stdout) == (0, "configmap/alpha patched\n"), out.stderr
    assert (await client.get(CONFIGMAPS, "alpha", namespace))["data"] == {"k0": "new", "k1": "v", "extra": "x"}
    again = pkctl("patch", "cm/alpha", "-p", '{"data": {"k0": "new"}}')
    assert again.stdout == "configmap/alpha patched (no change)\n", again.stderr
    # YAML merge patch removing a key, and a JSON patch; -o name
    assert pkctl("patch", "cm/alpha", "--type", "merge", "-p", "data:\n  extra: null\n").returncode == 0
    ops = '[{"op": "replace", "path": "/data/k1", "value": "json"}]'
    assert pkctl("patch", "cm/alpha", "--type=json", "-p", ops, "-o", "name").stdout == "configmap/alpha\n"
    assert (await client.get(CONFIGMAPS, "alpha", namespace))["data"] == {"k0": "new", "k1": "json"}
    # -f names the object, --patch-file holds the patch; --dry-run=server stores nothing
    manifest, patch_file = tmp_path / "cm.yaml", tmp_path / "patch.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: beta\n")
    patch_file.write_text("data:\n  from: file\n")
    assert pkctl("patch", "-f", str(manifest), "--patch-file", str(patch_file)).stdout == "configmap/beta patched\n"
    dry = pkctl("patch", "cm/beta", "-p", '{"data": {"dry": "run"}}', "--dry-run=server")
    assert dry.stdout == "configmap/beta patched (server dry run)\n", dry.stderr
    assert (await client.get(CONFIGMAPS, "beta", namespace))["data"] == {"from": "file"}

    # the status subresource: kubectl's way to set a condition by hand
    await client.create(PODS, pod("p"), namespace)
    status = '{"status": {"conditions": [{"type": "Ready", "status": "True"}]}}'
    st = pkctl("patch", "pod", "p", "--subresource", "status", "--type", "merge", "-p", status)
    assert st.stdout == "pod/p patched\n", st.stderr
    conditions = (await client.get(PODS, "p", namespace))["status"]["conditions"]
    assert [(c["type"], c["status"]) for c in conditions] == [("Ready", "True")]

    for argv, message in [
            (("patch", "cm/alpha"), "error: must specify --patch or --patch-file containing the contents of the patch"),
            (("patch", "cm/alpha", "-p", "{bad"), "error: unable to parse"),
            (("patch", "cm/alpha", "--type", "json", "-p", "{}"), "error: unable to parse"),
            (("patch", "cm/alpha", "--type", "apply", "-p", "{}"), "error: --type must be one of"),
            (("patch", "cm", "-p", "{}"), "error: resource(s) were provided, but no name was specified"),
            (("patch", "cm/nope", "-p", "{}"), 'Error from server (NotFound): configmaps "nope" not found')]:
        bad = pkctl(*argv)
        assert bad.returncode == 1 and bad.stderr.startswith(message), (argv, bad.stderr)


async def test_wait_for_condition_jsonpath_delete_and_timeout(pkctl: Pkctl, client: Client, namespace: str,
                                                             apiserver: ApiServer) -> None:
    await client.create(PODS, pod("w"), namespace)
    waiting = start_pkctl(apiserver, namespace, "wait", "--for=condition=Ready", "pod/w", "--timeout=30s")
    # the condition comes after the wait started: it is seen on the watch
    obj = await client.get(PODS, "w", namespace)
    obj.setdefault("status", {})["conditions"] = [{"type": "Ready", "status": "True"}]
    await client.update_status(PODS, obj)
    assert finish(waiting) == (0, "pod/w condition met\n", "")

    met = pkctl("wait", "pods", "-l", "app=web", "--for", "jsonpath={.metadata.labels.app}=web")
    assert (met.returncode, met.stdout) == (0, "pod/w condition met\n"), met.stderr
    late = pkctl("wait", "pod/w", "--for=condition=ready=false", "--timeout=1s")
    assert (late.returncode, late.stdout, late.stderr) == (
        1, "", "error: timed out waiting for the condition on pods/w\n")
    missing = pkctl("wait", "pod/nope", "--for=condition=Ready", "--timeout=2s")
    assert missing.returncode == 1 and missing.stderr == 'Error from server (NotFound): pods "nope" not found\n'
    assert pkctl("wait", "pod/nope", "--for=delete").returncode == 0  # gone already: nothing to wait for

    # --for=delete, with a finalizer holding the object until it is patched away
    await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, namespace)
    assert pkctl("delete", "cm/held", "--wait=false").stdout == 'configmap "held" deleted\n'
    waiting = start_pkctl(apiserver, namespace, "wait", "--for=delete", "cm/held", "--timeout=30s")
    assert pkctl("patch", "cm/held", "--type=json", "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]'
                 ).returncode == 0
    assert finish(waiting) == (0, "configmap/held condition met\n", "")

    for argv, message in [
            (("wait", "pod/w"), "error: --for must be set to one of"),
            (("wait", "pod/w", "--for=ready"), "error: unrecognized condition: 'ready'"),
            (("wait", "pod/w", "--for=delete", "--timeout=soon"), 'error: invalid argument "soon" for "--timeout"'),
            (("wait", "pods", "--for=delete"), "error: resource(s) were provided, but no name was specified"),
            (("wait", "pods", "-l", "app=none", "--for=condition=Ready"), "error: no matching resources found")]:
        bad = pkctl(*argv)
        assert bad.returncode == 1 and bad.stderr.startswith(message), (argv, bad.stderr)


def event(name: str, kind_: str, obj: str, type_: str, reason: str, at: str, namespace: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": kind_, "name": obj, "namespace": namespace}, "type": type_,
            "reason": reason, "message": f"{reason} happened", "count": 1, "firstTimestamp": at, "lastTimestamp": at}


async def test_events_columns_filters_and_watch(pkctl: Pkctl, client: Client, namespace: str,
                                                apiserver: ApiServer) -> None:
    none = pkctl("events")
    assert (none.returncode, none.stdout, none.stderr) == (0, "", f"No events found in {namespace} namespace.\n")
    for ev in (("e2", "Pod", "a", "Warning", "BackOff", "2026-01-01T00:00:02Z"),
               ("e1", "Pod", "a", "Normal", "Pulled", "2026-01-01T00:00:01Z"),
               ("e3", "ConfigMap", "b", "Normal", "Seen", "2026-01-01T00:00:03Z")):
        await client.create(EVENTS, event(*ev, namespace), namespace)
    rows = table(pkctl("events").stdout)
    assert rows[0] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [r[-4:-2] for r in rows[1:]] == [["Pulled", "Pod/a"], ["BackOff", "Pod/a"], ["Seen", "ConfigMap/b"]]
    assert [r[-4] for r in table(pkctl("events", "--for", "pod/a").stdout)[1:]] == ["Pulled", "BackOff"]
    assert [r[-4] for r in table(pkctl("events", "--types", "Warning").stdout)[1:]] == ["BackOff"]
    listed = yaml.safe_load(pkctl("events", "-o", "yaml").stdout)
    assert [e["metadata"]["name"] for e in listed["items"]] == ["e1", "e2", "e3"]
    everywhere = table(pkctl("events", "-A").stdout)
    assert everywhere[0][0] == "NAMESPACE" and [namespace, "Pod/a"] in [[r[0], r[-3]] for r in everywhere]
    bad = pkctl("events", "--types", "Bad")
    assert bad.returncode == 1 and bad.stderr == "error: valid --types are Normal, Warning, not 'Bad'\n"

    watching = Stream(start_pkctl(apiserver, namespace, "events", "-w", "--types", "Warning", "--no-headers"))
    try:
        watching.wait_line(lambda line: "BackOff" in line)  # the list first
        for ev in (("e4", "Pod", "a", "Normal", "Quiet", "2026-01-01T00:00:04Z"),
                   ("e5", "Pod", "a", "Warning", "Failed", "2026-01-01T00:00:05Z")):
            await client.create(EVENTS, event(*ev, namespace), namespace)
        watching.wait_line(lambda line: "Failed happened" in line)
        assert not any("Quiet" in line for line in watching.seen)  # a Normal event
    finally:
        watching.close()


def test_events_as_kubectl_prints_them(tls_api: ApiServer) -> None:
    """kubectl events and pkctl events on the same events (over TLS: kubectl sends its token only there)."""
    kubectl, ns = Kubectl(tls_api.kubeconfig), unique("ns")
    kubectl("create", "namespace", ns)
    try:
        docs = [event("e1", "Pod", "a", "Normal", "Pulled", "2026-01-01T00:00:01Z", ns),
                event("e2", "Pod", "a", "Warning", "BackOff", "2026-01-01T00:00:02Z", ns)]
        kubectl("create", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(d) for d in docs))
        for args in ((), ("--for", "pod/a"), ("--types", "Warning"), ("-A",)):
            theirs = kubectl("events", "-n", ns, *args).stdout.splitlines()
            ours = run_pkctl("--kubeconfig", tls_api.kubeconfig, "-n", ns, "events", *args).stdout.splitlines()
            if args == ("-A",):  # other tests' events too
                ours, theirs = ([line for line in lines if ns in line or "NAMESPACE" in line]
                                for lines in (ours, theirs))
            assert [line.split()[1:] for line in ours] == [line.split()[1:] for line in theirs], (args, ours, theirs)
            assert ours and ours[0] == theirs[0]
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


def editor(tmp_path: Path, *steps: str) -> dict[str, str]:
    """An $EDITOR that runs the shell step of its turn on the file (`sed -i ...`), one step per opening."""
    script, turn = tmp_path / "editor.sh", tmp_path / "turn"
    turn.write_text("0")
    cases = "\n".join(f"  {i}) {step} \"$1\" ;;" for i, step in enumerate(steps))
    script.write_text(f'#!/bin/sh\nn=$(cat {turn}); echo $((n + 1)) > {turn}\ncp "$1" {tmp_path}/seen-$n\n'
                      f'case $n in\n{cases}\nesac\n')
    script.chmod(0o755)
    # TMPDIR: pkctl keeps a copy of a failed edit in the temp dir, as kubectl does; here it goes with tmp_path
    return {"KUBE_EDITOR": str(script), "TMPDIR": str(tmp_path)}


async def test_edit_saves_reopens_on_errors_and_cancels(apiserver: ApiServer, client: Client, namespace: str,
                                                        tmp_path: Path) -> None:
    await make_configmaps(client, namespace)

    def edit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return run_pkctl("--kubeconfig", apiserver.kubeconfig, "-n", namespace, "edit", *args, env=env)
    out = edit(editor(tmp_path, "sed -i s/k0:.*/k0:\\ edited/"), "cm", "alpha")
    assert (out.returncode, out.stdout) == (0, "configmap/alpha edited\n"), out.stderr
    assert (await client.get(CONFIGMAPS, "alpha", namespace))["data"] == {"k0": "edited", "k1": "v"}
    assert (tmp_path / "seen-0").read_text().startswith("# Please edit the object below.")

    unchanged = edit(editor(tmp_path, "true"), "cm/alpha")
    assert (unchanged.returncode, unchanged.stderr) == (0, "Edit cancelled, no changes made.\n")

    # a value the server refuses: the file comes back with the reason, and the second try is saved
    bad_then_good = editor(tmp_path, "sed -i s/^kind:.*/kind:\\ ConfigMap\\\\nimmutable:\\ notabool/",
                           "sed -i s/notabool/true/")
    fixed = edit(bad_then_good, "cm/beta")
    assert (fixed.returncode, fixed.stdout) == (0, "configmap/beta edited\n"), fixed.stderr
    assert 'configmaps "beta" was not valid' in (tmp_path / "seen-1").read_text()
    assert (await client.get(CONFIGMAPS, "beta", namespace))["immutable"] is True
    # an edit that stays broken is given up when saved unchanged
    broken = edit(editor(tmp_path, "sed -i s/^data:/data:\\ [/", "true"), "cm/gamma")
    assert broken.returncode == 1 and broken.stderr.splitlines()[-1] == \
        "error: Edit cancelled, no valid changes were saved.", broken.stderr
    assert "syntax error" in (tmp_path / "seen-1").read_text()
    missing = edit(editor(tmp_path, "true"), "cm/nope")
    assert missing.returncode == 1 and missing.stderr == 'Error from server (NotFound): configmaps "nope" not found\n'


async def test_diff_against_a_server_dry_run(pkctl: Pkctl, client: Client, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\ndata:\n  a: one\n")
    new = pkctl("diff", "-f", str(manifest))
    assert new.returncode == 1, new.stderr
    assert f"+++ MERGED/v1.ConfigMap.{namespace}.d" in new.stdout and "+  a: one\n" in new.stdout
    assert pkctl("get", "cm", "d").returncode == 1  # a dry run: nothing stored
    assert pkctl("apply", "-f", str(manifest)).returncode == 0
    same = pkctl("diff", "-f", str(manifest))
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    manifest.write_text(manifest.read_text().replace("one", "two"))
    changed = pkctl("diff", "-f", str(manifest))
    assert changed.returncode == 1 and "-  a: one\n+  a: two\n" in changed.stdout, changed.stdout
    assert (await client.get(CONFIGMAPS, "d", namespace))["data"] == {"a": "one"}
    missing = pkctl("diff", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: the path"), missing.stderr


def test_config_verbs_as_kubectl(tmp_path: Path) -> None:
    """config view/get-contexts/current-context/use-context on a kubeconfig file, next to kubectl's."""
    doc = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": "one",
           "clusters": [{"name": "c1", "cluster": {"server": "https://127.0.0.1:1",
                                                   "certificate-authority-data": "Q0EK"}},
                        {"name": "c2", "cluster": {"server": "http://127.0.0.1:2"}}],
           "users": [{"name": "u1", "user": {"token": "secret-token"}}, {"name": "u2", "user": {}}],
           "contexts": [{"name": "one", "context": {"cluster": "c1", "user": "u1", "namespace": "apps"}},
                        {"name": "two", "context": {"cluster": "c2", "user": "u2"}}]}
    ours_file, theirs_file = tmp_path / "ours", tmp_path / "theirs"
    for f in (ours_file, theirs_file):
        f.write_text(yaml.safe_dump(doc))

    def both(*args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        ours = run_pkctl("--kubeconfig", str(ours_file), "config", *args)
        theirs = Kubectl(str(theirs_file))("config", *args, ok=False)
        return ours, theirs
    for args in (("view",), ("view", "--minify"), ("view", "--minify", "--raw")):
        ours, theirs = both(*args)
        assert ours.returncode == 0 and yaml.safe_load(ours.stdout) == yaml.safe_load(theirs.stdout), args
    for args in (("get-contexts",), ("get-contexts", "two"), ("get-contexts", "-o", "name"), ("current-context",)):
        ours, theirs = both(*args)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), args
    ours, theirs = both("use-context", "two")
    assert (ours.returncode, ours.stdout) == (0, 'Switched to context "two".\n') == (theirs.returncode, theirs.stdout)
    assert yaml.safe_load(ours_file.read_text())["current-context"] == "two"
    assert both("current-context")[0].stdout == "two\n"
    ours, theirs = both("use-context", "nope")
    assert (ours.returncode, ours.stderr) == (1, 'error: no context exists with the name: "nope"\n') == \
        (theirs.returncode, theirs.stderr)


async def test_cluster_info(pkctl: Pkctl, apiserver: ApiServer) -> None:
    out = pkctl("cluster-info")
    assert out.returncode == 0 and out.stdout.splitlines()[0] == \
        f"Kubernetes control plane is running at {apiserver.url}", out.stderr
    down = run_pkctl("--server", "http://127.0.0.1:1", "cluster-info")
    assert down.returncode == 1 and "refused" in down.stderr


def test_completion_script_completes_commands_kinds_and_flags() -> None:
    script = run_pkctl("completion", "bash").stdout

    def complete(*words: str) -> list[str]:
        probe = f"{script}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; _pkctl; " \
                'printf "%s\\n" "${COMPREPLY[@]}"'
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()
    assert complete("pkctl", "pat") == ["patch"]
    assert complete("pkctl", "-n", "ns", "get", "deploy") == ["deploy", "deployment", "deployments"]
    assert complete("pkctl", "wait", "--fo") == ["--for"]
    assert "use-context" in complete("pkctl", "config", "")
    assert run_pkctl("completion", "zsh").stdout.startswith("#compdef pkctl\n")
    bad = run_pkctl("completion", "fish")
    assert (bad.returncode, bad.stderr) == (1, 'error: Unsupported shell type "fish".\n')


async def test_dry_run_server_url_manifests_and_kustomize(pkctl: Pkctl, client: Client, namespace: str,
                                                         tmp_path: Path) -> None:
    out = pkctl("create", "configmap", "dry", "--from-literal", "a=b", "--dry-run=server", "-o", "yaml")
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert shown["metadata"]["namespace"] == namespace and shown["metadata"]["uid"]  # completed by the server
    assert pkctl("run", "dry", "--image", "busybox", "--dry-run=server").stdout == "pod/dry created (server dry run)\n"
    assert pkctl("get", "cm/dry").returncode == 1 and pkctl("get", "pod/dry").returncode == 1

    # -f URL: a manifest served on loopback
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-url\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        applied = pkctl("apply", "-f", f"{base}/cm.yaml")
        assert applied.stdout == "configmap/from-url created\n", applied.stderr
        missing = pkctl("apply", "-f", f"{base}/nope.yaml")
        assert missing.returncode == 1 and missing.stderr == \
            f'error: unable to read URL "{base}/nope.yaml", server reported 404 File not found, status code=404\n'
    finally:
        server.shutdown()
        server.server_close()
    kustomize = pkctl("apply", "-k", str(tmp_path))
    assert (kustomize.returncode, kustomize.stderr) == (
        1, f"error: kustomize is not supported by pkctl; use `kubectl kustomize {tmp_path} | pkctl apply -f -`\n")


def test_explain_as_kubectl_explains(tls_api: ApiServer) -> None:
    """The same text as kubectl explain, from the same OpenAPI documents."""
    kubectl = Kubectl(tls_api.kubeconfig)
    for args in (("deployment",), ("deployment.spec.replicas",), ("pods.spec.containers",), ("pod.spec.nope",),
                 ("deployment.spec", "--recursive"), ("cm",), ("controllerrevision",), ("svc.spec.ports",)):
        ours = run_pkctl("--kubeconfig", tls_api.kubeconfig, "explain", *args)
        theirs = kubectl("explain", *args, ok=False)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), \
            "".join(difflib.unified_diff(theirs.stdout.splitlines(True), ours.stdout.splitlines(True)))
    unknown = run_pkctl("--kubeconfig", tls_api.kubeconfig, "explain", "nope")
    assert (unknown.returncode, unknown.stderr) == (1, 'error: the server doesn\'t have a resource type "nope"\n')


GO_TEMPLATES = [
    '{{range .items}}{{.metadata.name}}{{"\\n"}}{{end}}',
    '{{range $i, $cm := .items}}{{$i}}={{$cm.metadata.name}} {{len $cm.metadata.labels}}{{"\\n"}}{{end}}',
    '{{range .items}}{{if eq .metadata.name "alpha"}}A{{else if .data}}D{{else}}-{{end}}{{end}}',
    '{{range .items}}{{range $k, $v := .metadata.labels}}{{$k}}:{{$v}},{{end}};{{end}}',
    '{{with index .items 0}}{{.metadata.labels}} {{.data}} {{.metadata.nothere}}{{end}}',
    '{{- range .items -}}\n  {{ printf "%-6s|%3d|%q" .metadata.name (len .metadata.labels) .metadata.name }}\n'
    '{{- end }}',
    '{{(index .items 2).metadata.name | printf "<%s>"}} {{.kind}} {{not .items}} {{and 1 0 2}} {{or 0 "" "x"}}',
    '{{range .items}}{{if and .data (gt (len .data) 1)}}{{.metadata.name}}{{end}}{{end}}{{/* a comment */}}',
    '{{range .items}}{{if .data.k0}}{{.data.k0 | base64decode}}{{end}}{{.nope.deeper}}{{end}}',
]


async def test_go_template_and_template_files_as_kubectl(tls_api: ApiServer, tmp_path: Path) -> None:
    """get -o go-template / go-template-file / custom-columns-file print what kubectl prints for the same objects."""
    kubectl, ns = Kubectl(tls_api.kubeconfig), unique("ns")
    kubectl("create", "namespace", ns)
    try:
        for name, labels, data in (("alpha", "app=web,tier=front", {"k0": "aGk=", "k1": "eA=="}),
                                   ("beta", "app=web", {}), ("gamma", "app=db", {"k0": "eW8="})):
            kubectl("-n", ns, "create", "configmap", name, *(f"--from-literal={k}={v}" for k, v in data.items()))
            kubectl("-n", ns, "label", "configmap", name, *labels.split(","))
        (tmp_path / "columns").write_text("NAME   APP\nmetadata.name   .metadata.labels.app\n")
        (tmp_path / "template").write_text(GO_TEMPLATES[1])
        outputs = [f"go-template={t}" for t in GO_TEMPLATES] + [
            f"go-template-file={tmp_path / 'template'}", f"custom-columns-file={tmp_path / 'columns'}"]
        for output in outputs:
            theirs = kubectl("-n", ns, "get", "configmaps", "-l", "app", "-o", output, ok=False)
            ours = run_pkctl("--kubeconfig", tls_api.kubeconfig, "-n", ns, "get", "configmaps", "-l", "app",
                             "-o", output)
            assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), (output, ours.stderr)
        single = run_pkctl("--kubeconfig", tls_api.kubeconfig, "-n", ns, "get", "cm", "beta", "-o",
                           "template={{.metadata.name}}")
        assert single.stdout == "beta"
        for output, message in (("go-template={{.a", "error: error parsing go-template"),
                                ("go-template={{nope}}", 'error: error executing template: function "nope" not'),
                                (f"custom-columns-file={tmp_path / 'none'}", "error: error reading template"),
                                ("go-template={{range .items}}{{.metadata.name}}{{.data.k0 | base64decode}}{{end}}",
                                 "error: error executing template: error calling base64decode: invalid value")):
            bad = run_pkctl("--kubeconfig", tls_api.kubeconfig, "-n", ns, "get", "cm", "-o", output)
            assert bad.returncode == 1 and bad.stderr.startswith(message), (output, bad.stderr)
        assert bad.stdout == "alphahibeta"  # what came before the failure, as kubectl prints it
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
