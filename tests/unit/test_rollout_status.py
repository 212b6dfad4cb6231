"""`pkctl rollout status` judgements on plain objects: kubectl's messages, order of checks and errors."""
from __future__ import annotations

from typing import Any

import pytest

from pkctl.rollout_status import (RolloutError, daemonset_status, deployment_status, parse_duration,
                                  statefulset_status)


def deployment(desired: int = 3, generation: int = 2, observed: int = 2, revision: str = "2",
               conditions: list[dict[str, Any]] | None = None, **status: int) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": generation,
                         "annotations": {"deployment.kubernetes.io/revision": revision}},
            "spec": {"replicas": desired},
            "status": {"observedGeneration": observed, "conditions": conditions or [], **status}}


@pytest.mark.parametrize("status, message, done", [
    ({"replicas": 3, "updatedReplicas": 1, "availableReplicas": 3},
     'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...', False),
    ({"replicas": 4, "updatedReplicas": 3, "availableReplicas": 3},
     'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...', False),
    ({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 1},
     'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...', False),
    ({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}, 'deployment "web" successfully rolled out', True),
])
def test_deployment_stages(status: dict[str, Any], message: str, done: bool) -> None:
    s = deployment(**status)
    assert (deployment_status(s).message, deployment_status(s).done) == (message, done)


def test_deployment_waits_for_the_controller_to_observe_the_spec() -> None:
    # A status that looks complete, but for the previous generation: not done yet.
    s = deployment(generation=3, observed=2, replicas=3, updatedReplicas=3, availableReplicas=3)
    assert deployment_status(s).message == "Waiting for deployment spec update to be observed..."
    assert not deployment_status(s).done


def test_deployment_scaled_to_zero_is_rolled_out() -> None:
    assert deployment_status(deployment(desired=0)).done


def test_deployment_progress_deadline_is_an_error() -> None:
    timed_out = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    with pytest.raises(RolloutError, match='^deployment "web" exceeded its progress deadline$'):
        deployment_status(deployment(conditions=timed_out, replicas=3, updatedReplicas=1))
    # Not yet observed: the condition may belong to the previous template, so keep waiting.
    assert not deployment_status(deployment(generation=3, conditions=timed_out)).done


def test_deployment_pinned_revision() -> None:
    done = deployment(desired=1, replicas=1, updatedReplicas=1, availableReplicas=1)
    assert deployment_status(done, revision=2).done
    with pytest.raises(RolloutError, match=r"^desired revision \(1\) is different from the running revision \(2\)$"):
        deployment_status(done, revision=1)
    with pytest.raises(RolloutError, match="cannot get the revision"):
        deployment_status(deployment(revision="x"), revision=1)


def daemonset(generation: int = 1, observed: int = 1, strategy: str = "RollingUpdate", **status: int) -> dict[str, Any]:
    return {"metadata": {"name": "agent", "generation": generation},
            "spec": {"updateStrategy": {"type": strategy}}, "status": {"observedGeneration": observed, **status}}


def test_daemonset_stages() -> None:
    assert daemonset_status(daemonset(desiredNumberScheduled=3, updatedNumberScheduled=1)).message == \
        'Waiting for daemon set "agent" rollout to finish: 1 out of 3 new pods have been updated...'
    assert daemonset_status(daemonset(desiredNumberScheduled=3, updatedNumberScheduled=3, numberAvailable=2)).message \
        == 'Waiting for daemon set "agent" rollout to finish: 2 of 3 updated pods are available...'
    done = daemonset_status(daemonset(desiredNumberScheduled=3, updatedNumberScheduled=3, numberAvailable=3))
    assert (done.message, done.done) == ('daemon set "agent" successfully rolled out', True)
    assert daemonset_status(daemonset(generation=2)).message == "Waiting for daemon set spec update to be observed..."
    with pytest.raises(RolloutError, match="only available for RollingUpdate strategy type"):
        daemonset_status(daemonset(strategy="OnDelete"))


def statefulset(replicas: int = 3, partition: int | None = 0, observed: int = 1, **status: Any) -> dict[str, Any]:
    strategy: dict[str, Any] = {"type": "RollingUpdate"}
    if partition is not None:
        strategy["rollingUpdate"] = {"partition": partition}
    return {"metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": replicas, "updateStrategy": strategy},
            "status": {"observedGeneration": observed, **status}}


def test_statefulset_stages() -> None:
    assert statefulset_status(statefulset(observed=0)).message == \
        "Waiting for statefulset spec update to be observed..."
    assert statefulset_status(statefulset(readyReplicas=1)).message == "Waiting for 2 pods to be ready..."
    assert statefulset_status(statefulset(partition=1, readyReplicas=3, updatedReplicas=1)).message == \
        "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated..."
    done = statefulset_status(statefulset(readyReplicas=3, updatedReplicas=3))
    assert (done.message, done.done) == ("partitioned roll out complete: 3 new pods have been updated...", True)
    # Without rollingUpdate settings the revisions decide.
    rolling = statefulset(partition=None, readyReplicas=3, updatedReplicas=1, updateRevision="db-2",
                          currentRevision="db-1")
    assert statefulset_status(rolling).message == \
        "waiting for statefulset rolling update to complete 1 pods at revision db-2..."
    complete = statefulset(partition=None, readyReplicas=3, currentReplicas=3, updateRevision="db-2",
                           currentRevision="db-2")
    assert statefulset_status(complete).message == "statefulset rolling update complete 3 pods at revision db-2..."


@pytest.mark.parametrize("text, seconds", [("0", 0), ("0s", 0), ("90s", 90), ("1m30s", 90), ("1.5h", 5400),
                                           ("500ms", 0.5), ("2h3m4s", 7384)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, message", [("1", 'time: missing unit in duration "1"'),
                                           ("abc", 'time: invalid duration "abc"'),
                                           ("", 'time: invalid duration ""'),
                                           ("5x", 'time: invalid duration "5x"')])
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_duration(text)
    assert str(e.value) == message
