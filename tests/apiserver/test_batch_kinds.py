"""batch/v1 Job and CronJob as the apiserver serves them: defaults, the generated selector, validation with
field paths, what may change after creation, discovery and Table columns."""
from __future__ import annotations

from typing import Any

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CRONJOBS, JOBS
from tests.util import unique

Body = dict[str, Any]


def job(name: str, **spec: Any) -> Body:
    pod_spec = {"restartPolicy": spec.pop("restartPolicy", "Never"),
                "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": pod_spec}, **spec}}


def cronjob(name: str, schedule: str = "*/5 * * * *", **spec: Any) -> Body:
    template = job("x")["spec"]
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": template}, **spec}}


async def rejected(client: Client, res: Any, body: Body, namespace: str) -> dict[str, str]:
    with pytest.raises(ApiError) as e:
        await client.create(res, body, namespace=namespace)
    assert e.value.code == 422, e.value.status
    return {c["field"]: c["message"] for c in e.value.status["details"]["causes"]}


async def test_job_defaults_and_generated_selector(client: Client, namespace: str) -> None:
    name = unique("j")
    got = await client.create(JOBS, job(name), namespace=namespace)
    spec, uid = got["spec"], got["metadata"]["uid"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert (spec["completionMode"], spec["suspend"], spec["podReplacementPolicy"]) == ("NonIndexed", False,
                                                                                        "TerminatingOrFailed")
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name}
    assert got["status"] == {}
    # work-queue Jobs: parallelism without completions leaves completions unset
    wq = await client.create(JOBS, job(unique("j"), parallelism=3), namespace=namespace)
    assert "completions" not in wq["spec"] and wq["spec"]["parallelism"] == 3


async def test_job_manual_selector_is_kept(client: Client, namespace: str) -> None:
    body = job(unique("j"), manualSelector=True, selector={"matchLabels": {"app": "mine"}})
    body["spec"]["template"]["metadata"] = {"labels": {"app": "mine"}}
    got = await client.create(JOBS, body, namespace=namespace)
    assert got["spec"]["selector"] == {"matchLabels": {"app": "mine"}}
    assert got["spec"]["template"]["metadata"]["labels"] == {"app": "mine"}
    body = job(unique("j"), manualSelector=True, selector={"matchLabels": {"app": "other"}})
    body["spec"]["template"]["metadata"] = {"labels": {"app": "mine"}}
    causes = await rejected(client, JOBS, body, namespace)
    assert "`selector` does not match template `labels`" in causes["spec.template.metadata.labels"]
    # without manualSelector the server owns the selector
    body = job(unique("j"), selector={"matchLabels": {"app": "mine"}})
    body["spec"]["template"]["metadata"] = {"labels": {"app": "mine"}}
    causes = await rejected(client, JOBS, body, namespace)
    assert causes["spec.selector"].endswith("`selector` not auto-generated")


async def test_job_validation_names_the_fields(client: Client, namespace: str) -> None:
    causes = await rejected(client, JOBS, job(unique("j"), restartPolicy="Always"), namespace)
    assert causes["spec.template.spec.restartPolicy"] == \
        'Unsupported value: "Always": supported values: "OnFailure", "Never"'
    causes = await rejected(client, JOBS, job(unique("j"), completionMode="Indexed", parallelism=2,
                                              completions=None, backoffLimit=-1), namespace)
    assert causes["spec.completions"] == "Required value: when completion mode is Indexed"
    assert causes["spec.backoffLimit"] == "Invalid value: -1: must be greater than or equal to 0"
    causes = await rejected(client, JOBS, job(unique("j"), backoffLimitPerIndex=1, maxFailedIndexes=2,
                                              completions=1), namespace)
    assert causes["spec.backoffLimitPerIndex"] == "Invalid value: 1: requires indexed completion mode"
    assert causes["spec.maxFailedIndexes"] == "Invalid value: 2: must be less than or equal to completions"
    policy = {"rules": [{"succeededIndexes": "0-9", "succeededCount": 20}, {}]}
    causes = await rejected(client, JOBS, job(unique("j"), completionMode="Indexed", completions=5,
                                              successPolicy=policy), namespace)
    assert causes["spec.successPolicy.rules[0].succeededIndexes"].endswith("must be less than completions")
    assert causes["spec.successPolicy.rules[0].succeededCount"].startswith("Invalid value: 20: must be less than")
    assert "at least one of succeededCount or succeededIndexes" in causes["spec.successPolicy.rules[1]"]
    causes = await rejected(client, JOBS, job(unique("j"), completionMode="Sometimes"), namespace)
    assert "Unsupported value: \"Sometimes\"" in causes["spec.completionMode"]
    policy = {"rules": [{"action": "Explode", "onExitCodes": {"operator": "In", "values": [0, 3]}},
                        {"action": "Ignore"}]}
    causes = await rejected(client, JOBS, job(unique("j"), restartPolicy="OnFailure", podFailurePolicy=policy),
                            namespace)
    assert causes["spec.template.spec.restartPolicy"] == \
        'Invalid value: "OnFailure": only "Never" is supported when podFailurePolicy is specified'
    assert "Unsupported value: \"Explode\"" in causes["spec.podFailurePolicy.rules[0].action"]
    assert causes["spec.podFailurePolicy.rules[0].onExitCodes.values[0]"] == \
        "Invalid value: 0: must not be 0 for the In operator"
    assert "specifying one of OnExitCodes and OnPodConditions is required" in \
        causes["spec.podFailurePolicy.rules[1]"]


async def test_job_template_is_immutable_but_parallelism_and_suspend_are_not(client: Client,
                                                                            namespace: str) -> None:
    got = await client.create(JOBS, job(unique("j"), suspend=True), namespace=namespace)
    got["spec"]["parallelism"] = 4
    got["spec"]["suspend"] = False
    updated = await client.update(JOBS, got)
    assert updated["spec"]["parallelism"] == 4 and updated["metadata"]["generation"] == 2
    updated["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    updated["spec"]["completions"] = 5
    with pytest.raises(ApiError) as e:
        await client.update(JOBS, updated)
    fields = {c["field"]: c["message"] for c in e.value.status["details"]["causes"]}
    assert set(fields) == {"spec.template", "spec.completions"}
    assert fields["spec.completions"] == "Invalid value: 5: field is immutable"


async def test_cronjob_defaults_and_validation(client: Client, namespace: str) -> None:
    got = await client.create(CRONJOBS, cronjob(unique("cj"), "@hourly"), namespace=namespace)
    spec = got["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    assert "selector" not in spec["jobTemplate"]["spec"]
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    tz = await client.create(CRONJOBS, cronjob(unique("cj"), "0 9 * * 1-5", timeZone="Europe/Berlin"),
                             namespace=namespace)
    assert tz["spec"]["timeZone"] == "Europe/Berlin"

    causes = await rejected(client, CRONJOBS, cronjob(unique("cj"), "61 * * * *", timeZone="Mars/Olympus",
                                                      concurrencyPolicy="Sometimes",
                                                      startingDeadlineSeconds=-5), namespace)
    assert causes["spec.schedule"].startswith('Invalid value: "61 * * * *": ')
    assert causes["spec.timeZone"] == 'Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'
    assert "Unsupported value: \"Sometimes\"" in causes["spec.concurrencyPolicy"]
    assert causes["spec.startingDeadlineSeconds"] == "Invalid value: -5: must be greater than or equal to 0"
    causes = await rejected(client, CRONJOBS, cronjob(unique("cj"), "TZ=UTC 0 * * * *"), namespace)
    assert causes["spec.schedule"].endswith("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    bad = cronjob(unique("cj"))
    bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    causes = await rejected(client, CRONJOBS, bad, namespace)
    assert "spec.jobTemplate.spec.template.spec.restartPolicy" in causes
    causes = await rejected(client, CRONJOBS, cronjob("c" * 53), namespace)
    assert "must be no more than 52 characters" in causes["metadata.name"]


async def test_batch_discovery_and_tables(client: Client, namespace: str) -> None:
    doc = await client.request("GET", "/apis/batch/v1")
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["jobs"]["kind"] == "Job" and by_name["jobs"]["categories"] == ["all"]
    assert by_name["cronjobs"]["shortNames"] == ["cj"]
    assert {"jobs/status", "cronjobs/status"} <= set(by_name)
    name = unique("j")
    await client.create(JOBS, job(name, parallelism=3, completions=None), namespace=namespace)
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io"
    table = await client.request("GET", JOBS.path(namespace), headers={"Accept": accept})
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Status", "Completions", "Duration",
                                                                   "Age"]
    row = next(r["cells"] for r in table["rows"] if r["cells"][0] == name)
    assert row[1:3] == ["Running", "0/1 of 3"]
    await client.create(CRONJOBS, cronjob(name, timeZone="Etc/UTC"), namespace=namespace)
    table = await client.request("GET", CRONJOBS.path(namespace), headers={"Accept": accept})
    assert [c["name"] for c in table["columnDefinitions"]][:7] == ["Name", "Schedule", "Timezone", "Suspend",
                                                                   "Active", "Last Schedule", "Age"]
    assert table["rows"][0]["cells"][1:6] == ["*/5 * * * *", "Etc/UTC", "False", "0", "<none>"]

