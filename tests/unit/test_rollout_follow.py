"""How `rollout status` follows one object through a watch: re-watching, 410 Gone, deletion, a lost server.

A scripted stand-in for the API client replays watch streams, so each path is exercised exactly;
the real watch against the real apiserver is covered by tests/pkctl/test_rollout.py.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, AsyncIterator

import pytest

from pkctl.commands import rollout
from pkctl.commands.rollout import Found, follow_status
from pkctl.rollout_status import RolloutError, deployment_status
from pklib.errors import ApiError, ConnectionFailed
from pklib.resources import lookup

DEPLOY = lookup("deployments")
assert DEPLOY is not None


def web(rv: str, updated: int, available: int) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "generation": 1, "resourceVersion": rv,
                         "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": updated,
                       "availableReplicas": available}}


class ScriptedClient:
    """Each watch() call plays the next script entry: a list of events (then the stream ends) or an error."""

    def __init__(self, streams: list[Any], current: dict[str, Any] | None = None):
        self.streams = streams
        self.current = current
        self.watched_from: list[str | None] = []
        self.gets = 0

    async def watch(self, res: Any, namespace: str | None, *, resource_version: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int | None = None
                    ) -> AsyncIterator[dict[str, Any]]:
        assert field_selector == "metadata.name=web"
        self.watched_from.append(resource_version)
        assert self.streams, "watched again after the script ended"
        step = self.streams.pop(0)
        if isinstance(step, Exception):
            raise step
        for event in step:
            yield event

    async def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.gets += 1
        if self.current is None:
            raise ApiError.from_response(404, {"kind": "Status", "reason": "NotFound", "message": "not found"})
        return self.current


def follow(client: ScriptedClient, first: dict[str, Any], watch: bool = True) -> Any:
    found = Found(DEPLOY, first)  # type: ignore[arg-type]
    return follow_status(SimpleNamespace(client=client), found,  # type: ignore[arg-type]
                         lambda obj: deployment_status(obj), watch)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollout, "BACKOFF_SECONDS", 0)


WAIT_0 = 'Waiting for deployment "web" rollout to finish: 0 of 2 updated replicas are available...'
WAIT_1 = 'Waiting for deployment "web" rollout to finish: 1 of 2 updated replicas are available...'
DONE = 'deployment "web" successfully rolled out'


async def test_done_at_once_or_without_watch_needs_no_watch(capsys: pytest.CaptureFixture[str]) -> None:
    client = ScriptedClient([])
    await follow(client, web("5", 2, 2))
    await follow(client, web("5", 2, 0), watch=False)
    assert capsys.readouterr().out == f"{DONE}\n{WAIT_0}\n"
    assert client.watched_from == []


async def test_a_stream_ended_by_the_server_is_resumed_from_the_last_version(
        capsys: pytest.CaptureFixture[str]) -> None:
    client = ScriptedClient([
        [{"type": "MODIFIED", "object": web("6", 2, 1)}, {"type": "BOOKMARK", "object": {"metadata": {
            "resourceVersion": "9"}}}],
        [],  # ends without any event
        [{"type": "MODIFIED", "object": web("12", 2, 2)}],
    ])
    await follow(client, web("5", 2, 0))
    assert client.watched_from == ["5", "9", "9"]
    assert capsys.readouterr().out == f"{WAIT_0}\n{WAIT_1}\n{DONE}\n", "a re-watch prints nothing by itself"


async def test_a_too_old_version_is_read_again(capsys: pytest.CaptureFixture[str]) -> None:
    gone = ApiError.from_response(410, {"kind": "Status", "reason": "Expired", "message": "too old"})
    client = ScriptedClient([gone, [{"type": "MODIFIED", "object": web("30", 2, 2)}]], current=web("20", 2, 1))
    await follow(client, web("5", 2, 0))
    assert client.watched_from == ["5", "20"]
    assert capsys.readouterr().out == f"{WAIT_0}\n{WAIT_1}\n{DONE}\n"


async def test_deletion_ends_with_an_error() -> None:
    client = ScriptedClient([[{"type": "DELETED", "object": web("7", 2, 0)}]])
    with pytest.raises(RolloutError, match="^object has been deleted$"):
        await follow(client, web("5", 2, 0))
    # Deleted while the connection was down: found out by the read that follows.
    client = ScriptedClient([ConnectionFailed("watch lost")], current=None)
    with pytest.raises(RolloutError, match="^object has been deleted$"):
        await follow(client, web("5", 2, 0))


async def test_a_lost_server_is_retried_a_bounded_number_of_times() -> None:
    client = ScriptedClient([ConnectionFailed("refused")] * (rollout.MAX_RECONNECTS + 1), current=web("5", 2, 0))
    with pytest.raises(ConnectionFailed):
        await follow(client, web("5", 2, 0))
    assert len(client.watched_from) == rollout.MAX_RECONNECTS + 1
    assert client.gets == rollout.MAX_RECONNECTS


async def test_a_progress_deadline_reported_on_the_watch_is_an_error() -> None:
    stalled = web("8", 2, 0)
    stalled["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    client = ScriptedClient([[{"type": "MODIFIED", "object": stalled}]])
    with pytest.raises(RolloutError, match='exceeded its progress deadline'):
        await follow(client, web("5", 2, 0))
