"""pkctl's command line without a server: flag checks and local commands, run in-process."""
from __future__ import annotations

import pytest

from pkctl.main import main


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

    monkeypatch.setattr(get_command, "run", broken)
    monkeypatch.delenv("PKCTL_DEBUG", raising=False)
    code, out, err = run(capsys, "get", "pods")
    assert code == 1 and out == ""
    assert err.startswith("error: unexpected failure (RuntimeError: boom); this is a bug in pkctl")
    assert "Traceback" not in err and err.count("\n") == 1
