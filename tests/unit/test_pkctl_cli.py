"""pkctl's command line without a server: flag checks and local commands, run in-process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pklib import kubeconfig
from pkctl.main import main
from tests.support.controlplane import ROOT
from tests.util import free_port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_api_resources_lists_kinds_with_short_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "api-resources")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in [line.split() for line in lines]
    code, out, _ = run(capsys, "api-resources", "--namespaced=false", "-o", "name")
    assert "nodes" in out.split() and "pods" not in out.split()


@pytest.mark.parametrize("argv, message", [
    (["get"], 'error: You must specify the type of resource to get. Use "pkctl api-resources"'),
    (["get", "pods", "x", "-l", "a=b"], "error: selectors cannot be used when passing resource/name arguments"),
    (["get", "pods", "x", "-A"], "error: a resource cannot be retrieved by name across all namespaces"),
    (["get", "pods,svc", "-w"], "error: watch is only supported on individual resources"),
    (["delete"], "error: You must provide one or more resources by argument or filename."),
    (["delete", "pods", "--now", "--grace-period", "5"], "error: --now and --grace-period cannot be specified"),
    (["scale", "deploy/x", "--replicas", "-1"], "error: The --replicas=COUNT flag is required"),
    (["create"], "error: must specify one of -f"),
    (["apply", "-f", "/nonexistent/x.yaml"], 'error: the path "/nonexistent/x.yaml" does not exist'),
])
def test_user_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], argv: list[str],
                                             message: str) -> None:
    # A server that cannot be reached: these fail before (or without) talking to it.
    code, out, err = run(capsys, "--server", "http://127.0.0.1:1", *argv)
    assert code == 1 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_an_unexpected_failure_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import pkctl.commands.get as get_command

    def broken(*_: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(get_command, "call", broken)
    monkeypatch.delenv("PKCTL_DEBUG", raising=False)
    code, out, err = run(capsys, "get", "pods")
    assert code == 1 and out == ""
    assert err.startswith("error: unexpected failure (RuntimeError: boom); this is a bug in pkctl")
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, command", [
    (["get", "pods"], "get"),
    (["-n", "ns", "--kubeconfig", "kc", "describe", "pod", "x"], "describe"),
    (["--kubeconfig=kc", "-nns", "api-resources"], "api-resources"),
    (["--kube", "apply", "get", "pods"], "get"),  # an abbreviated flag takes its value as argparse does
    (["-s", "http://x", "port-forward", "pod/x", "80"], "port-forward"),
    (["-h", "get"], None),  # the help of everything
    (["bogus", "pods"], None),
    ([], None),
])
def test_the_command_is_found_after_the_global_flags(argv: list[str], command: str | None) -> None:
    from pkctl.main import command_of
    assert command_of(argv) == command


def test_every_command_is_in_the_table_and_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import importlib

    from pkctl.main import COMMAND_MODULES, COMMANDS
    for module in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"pkctl.commands.{module}").register(sub)
        assert sorted(sub.choices) == sorted(name for name, m in COMMANDS.items() if m == module)
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out.split("COMMAND\n", 1)[1]
    assert [line.split()[0] for line in listed.splitlines() if line.startswith("    ") and
            not line.startswith("     ")] == list(COMMANDS)


HEAVY = ("asyncio", "aiohttp", "images", "kubelet")
# what most verbs also do without: orjson and dataclasses (which imports inspect), and shutil (argparse asks it for
# the help width): ~15 ms of `pkctl apply`
LEAN = ("orjson", "dataclasses", "inspect", "shutil")


@pytest.mark.parametrize("argv", [
    ["get", "pods", "-A"], ["-n", "x", "get", "pod", "p", "-o", "yaml"], ["describe", "pod", "p"],
    ["delete", "configmap", "c"], ["scale", "deploy/web", "--replicas", "1"], ["logs", "p"],
    ["apply", "-f", "MANIFEST"], ["create", "-f", "MANIFEST"], ["create", "namespace", "x"], ["api-resources"],
])
def test_one_shot_verbs_load_no_event_loop_aiohttp_image_or_kubelet_code(argv: list[str], tmp_path: Path) -> None:
    """What makes pkctl start slowly stays out of the everyday verbs (the server here refuses: they fail fast)."""
    heavy = HEAVY if argv[0] == "describe" else HEAVY + LEAN  # describe: pklib/quantity.py uses dataclasses
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    argv = [str(manifest) if a == "MANIFEST" else a for a in argv]
    probe = (f"import sys\nHEAVY = {heavy!r}\nfrom pkctl.main import main\ncode = main(sys.argv[1:])\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)\n"
             "print('exit', code, ' '.join(heavy) or '-')\n")
    r = subprocess.run([sys.executable, "-c", probe, "--server", f"http://127.0.0.1:{free_port()}", *argv],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.splitlines()[-1].split() == ["exit", "0" if argv == ["api-resources"] else "1", "-"], r


@pytest.mark.parametrize("argv, message", [
    (["cluster", "join", "http://192.0.2.1:6443", "--token", "abcdef.0123456789abcdef", "--ca-hash", "sha256:" + "0" * 64],
     "error: the API server URL must be https://HOST:PORT"),
    (["cluster", "join", "https://192.0.2.1:6443", "--token", "secret", "--ca-hash", "sha256:" + "0" * 64],
     "error: --token must be a bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16}"),
    (["cluster", "join", "https://192.0.2.1:6443", "--token", "abcdef.0123456789abcdef", "--ca-hash", "md5:00"],
     "error: --ca-hash must be sha256:<64 hex digits>"),
    (["cluster", "join", "https://192.0.2.1:6443", "--token", "abcdef.0123456789abcdef", "--ca-hash",
      "sha256:" + "0" * 64, "--node-name", "Not_A_Name"], "error: --node-name 'not_a_name' is not a valid node name"),
])
def test_join_flags_are_checked_before_any_network(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  argv: list[str], message: str) -> None:
    code, _, err = run(capsys, *argv, "--home", str(tmp_path / "node"))
    assert code == 1 and err.startswith(message), err
    assert not (tmp_path / "node").exists()


def test_token_ttl_is_a_duration(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["cluster", "token", "create", "--ttl", "soon", "--home", str(tmp_path)])
    assert e.value.code == 2 and "argument --ttl: 'soon': time: invalid duration" in capsys.readouterr().err
    code, _, err = run(capsys, "cluster", "token", "list", "--home", str(tmp_path / "none"))
    assert code == 1 and err.startswith("error: no pkube cluster at"), err


@pytest.mark.parametrize("argv", [["get", "pods", "-A"], ["get", "pod", "p", "-o", "json"], ["describe", "pod", "p"],
                                  ["delete", "configmap", "c"], ["scale", "deploy/web", "--replicas", "1"], ["logs", "p"]])
def test_with_the_json_kubeconfig_pkube_writes_no_verb_without_yaml_loads_a_yaml_parser(argv: list[str],
                                                                                        tmp_path: Path) -> None:
    """A cluster home's kubeconfig is JSON (pklib/kubeconfig.py write): reading it must not cost the YAML
    parser's import; a verb that neither reads nor prints YAML then starts without it."""
    kc = tmp_path / "kubeconfig"
    kubeconfig.write(kc, kubeconfig.build(f"http://127.0.0.1:{free_port()}", "t"), as_json=True)
    probe = ("import sys\nfrom pkctl.main import main\ncode = main(sys.argv[1:])\n"
             "print('exit', code, 'yaml' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", probe, "--kubeconfig", str(kc), *argv],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.splitlines()[-1].split() == ["exit", "1", "False"], r
    assert "connect" in r.stderr.lower() or "refused" in r.stderr.lower(), r.stderr


def test_kubeconfig_reads_json_and_yaml_alike_and_reports_a_broken_file(tmp_path: Path) -> None:
    doc = kubeconfig.build("https://127.0.0.1:6443", "tok", namespace="team")
    for as_json in (True, False):
        kubeconfig.write(tmp_path / "kc", doc, as_json=as_json)
        assert (tmp_path / "kc").read_text().startswith("{") == as_json
        access = kubeconfig.load(tmp_path / "kc")
        assert (access.server, access.token, access.namespace) == ("https://127.0.0.1:6443", "tok", "team")
    (tmp_path / "kc").write_text('{"apiVersion": "v1", "clusters": [')  # JSON cut short
    with pytest.raises(kubeconfig.KubeconfigError, match="is not valid YAML"):
        kubeconfig.load(tmp_path / "kc")
