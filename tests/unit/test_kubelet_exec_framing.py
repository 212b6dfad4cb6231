"""The pure parts of the kubelet's exec stream: the final status frame and the resize frame."""
from __future__ import annotations

import json

import pytest

from apiserver.proxy_pods import ERROR
from kubelet.server import STATUS, exit_status, parse_resize
from pkctl.commands.exec import exit_code


def test_exit_status_is_what_kubectl_and_pkctl_read_the_exit_code_from() -> None:
    assert exit_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    failed = exit_status(["sh", "-c", "exit 7"], 7)
    assert failed["reason"] == "NonZeroExitCode" and "exit code 7" in failed["message"]
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    # the same reading pkctl exec does (and kubectl, from the same fields)
    assert exit_code(json.loads(json.dumps(failed))) == 7 and exit_code(exit_status(["true"], 0)) == 0
    assert STATUS == ERROR  # the kubelet's status channel is the one the API server relays as channel 3


@pytest.mark.parametrize("payload, size", [
    (b'{"Width": 132, "Height": 40}', (132, 40)),
    (b'{"Width": 80, "Height": 24, "extra": 1}', (80, 24)),
    (b'{"Width": 0, "Height": 24}', None),        # a zero size would break the terminal: ignored
    (b'{"Width": 70000, "Height": 24}', None),    # does not fit a winsize
    (b'{"Width": "x", "Height": 24}', None),
    (b'{"Height": 24}', None),
    (b"not json", None),
    (b"[1, 2]", None),
])
def test_parse_resize(payload: bytes, size: tuple[int, int] | None) -> None:
    assert parse_resize(payload) == size
