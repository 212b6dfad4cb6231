"""A StatefulSet whose pod create or delete got no answer (the apiserver died in the middle of the request) does
not wait for that pod's event: its next sync acts again. Waiting stalled the set's rolling update until the
expectations expired (5 minutes), as a chaos run's apiserver kill showed."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from controllers.statefulset import StatefulSetController
from pklib.controller import ControllerContext
from pklib.errors import ConnectionFailed
from pklib.informer import InformerFactory
from tests.support.workloads import sts_body

KEY = "default/db"


class DeadApi:
    """An API server that goes away while each write is on its way."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def create(self, res: Any, body: dict[str, Any], namespace: str | None = None, **kw: Any) -> Any:
        self.calls.append(f"create {body['metadata']['name']}")
        raise ConnectionFailed("server disconnected")

    async def delete(self, res: Any, name: str, namespace: str | None = None, **kw: Any) -> Any:
        self.calls.append(f"delete {name}")
        raise ConnectionFailed("server disconnected")


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def normal(self, obj: Any, reason: str, message: str) -> None:
        self.events.append(reason)

    def warning(self, obj: Any, reason: str, message: str) -> None:
        self.events.append(reason)


def controller() -> tuple[StatefulSetController, DeadApi]:
    api = DeadApi()
    ctx = ControllerContext(api, InformerFactory(api), Recorder())  # type: ignore[arg-type]
    return StatefulSetController(ctx), api


def the_set() -> dict[str, Any]:
    sts = sts_body("db", 1)
    sts["metadata"].update(namespace="default", uid="uid-db")
    return sts


async def test_a_pod_delete_lost_with_the_connection_is_not_waited_for() -> None:
    c, api = controller()
    pod = {"metadata": {"name": "db-0", "namespace": "default", "uid": "uid-db-0"}}
    with pytest.raises(Exception):
        await c._delete(the_set(), KEY, pod)
    assert api.calls == ["delete db-0"]
    assert c.expectations.satisfied(KEY), "the next sync may delete again"


async def test_a_pod_create_lost_with_the_connection_is_not_waited_for() -> None:
    c, api = controller()
    sts = the_set()
    with pytest.raises(ConnectionFailed):
        await c._create(sts, KEY, 0, copy.deepcopy(sts["spec"]["template"]), "db-1")
    assert api.calls == ["create db-0"]
    assert c.expectations.satisfied(KEY), "the next sync may create again"
