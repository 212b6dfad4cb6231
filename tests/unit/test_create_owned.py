"""A controller's pod create whose answer was lost (the apiserver died as it wrote) is sent again under the same
name: AlreadyExists for a pod of the same controller says the first one was carried out. Against a fake API
that carries a create out and loses the answer."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from controllers import util
from controllers.util import create_owned
from pklib.errors import ApiError, ConnectionFailed
from pklib.resources import PODS


class LossyApi:
    def __init__(self, lose: int, carried_out: bool = True) -> None:
        self.lose, self.carried_out = lose, carried_out  # answers to lose; whether a lost create was made
        self.pods: dict[str, dict[str, Any]] = {}
        self.creates = 0

    async def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        self.creates += 1
        name = obj["metadata"]["name"]
        if name in self.pods:
            raise ApiError({"code": 409, "reason": "AlreadyExists", "message": f'pods "{name}" already exists'})
        if self.lose:
            self.lose -= 1
            if self.carried_out:
                self.pods[name] = copy.deepcopy(obj)
            raise ConnectionFailed("the API server at https://127.0.0.1:6443 closed the connection")
        self.pods[name] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    async def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.pods[name])


def pod(name: str, owner_uid: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": owner_uid, "controller": True}]}}


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(util, "CREATE_RETRY", 0.01)


async def test_a_create_carried_out_whose_answer_was_lost_counts_as_made_once() -> None:
    api = LossyApi(lose=1)
    made = await create_owned(api, PODS, pod("web-abcde", "rs-1"))  # type: ignore[arg-type]
    assert made["metadata"]["name"] == "web-abcde" and list(api.pods) == ["web-abcde"] and api.creates == 2


async def test_a_create_lost_before_it_was_carried_out_is_made_by_the_retry() -> None:
    api = LossyApi(lose=2, carried_out=False)
    await create_owned(api, PODS, pod("web-abcde", "rs-1"))  # type: ignore[arg-type]
    assert list(api.pods) == ["web-abcde"] and api.creates == 3


async def test_a_name_taken_by_another_controllers_pod_is_an_error_and_a_dead_server_is_reported() -> None:
    api = LossyApi(lose=0)
    api.pods["web-abcde"] = pod("web-abcde", "rs-other")
    with pytest.raises(ApiError):  # the first attempt's AlreadyExists is not ours to explain away
        await create_owned(api, PODS, pod("web-abcde", "rs-1"))  # type: ignore[arg-type]
    api = LossyApi(lose=10, carried_out=False)
    with pytest.raises(ConnectionFailed):
        await create_owned(api, PODS, pod("web-fghij", "rs-1"))  # type: ignore[arg-type]
    assert api.creates == util.CREATE_ATTEMPTS
