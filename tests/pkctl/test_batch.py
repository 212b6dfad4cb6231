"""`pkctl create job|cronjob`, `create job --from=cronjob/x` and `pkctl get jobs|cronjobs` as a user runs them."""
from __future__ import annotations

from pklib.client import Client
from pklib.resources import CRONJOBS, JOBS
from tests.support.pkctl import Pkctl


async def test_create_jobs_and_cronjobs_and_list_them(pkctl: Pkctl, client: Client, namespace: str) -> None:
    r = pkctl("create", "job", "once", "--image", "busybox", "--", "echo", "hi")
    assert r.returncode == 0 and r.stdout.strip() == "job.batch/once created", r.stderr
    job = await client.get(JOBS, "once", namespace)
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["containers"][0]["name"] == "once" and pod_spec["containers"][0]["command"] == ["echo", "hi"]

    r = pkctl("create", "cronjob", "nightly", "--image", "busybox", "--schedule", "@daily", "--", "date")
    assert r.returncode == 0 and r.stdout.strip() == "cronjob.batch/nightly created", r.stderr
    cj = await client.get(CRONJOBS, "nightly", namespace)
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"

    r = pkctl("create", "job", "manual", "--from=cronjob/nightly")
    assert r.returncode == 0 and r.stdout.strip() == "job.batch/manual created", r.stderr
    manual = await client.get(JOBS, "manual", namespace)
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    ref = manual["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("CronJob", "nightly", cj["metadata"]["uid"])
    assert manual["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]

    r = pkctl("get", "jobs")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], r.stdout
    assert any(line.split()[:3] == ["once", "Running", "0/1"] for line in lines[1:]), r.stdout
    r = pkctl("get", "cj")
    assert r.stdout.splitlines()[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST",
                                                "SCHEDULE", "AGE"], r.stdout
    assert r.stdout.splitlines()[1].split()[:6] == ["nightly", "@daily", "<none>", "False", "0", "<none>"]


def test_create_job_mistakes_are_one_line_errors(pkctl: Pkctl) -> None:
    for args, message in ((("create", "job", "x"), "error: either --image or --from must be specified"),
                          (("create", "job", "x", "--from=deployment/web"),
                           "error: from must be an existing cronjob: deployment/web"),
                          (("create", "job", "x", "--from=cronjob/nope"),
                           'Error from server (NotFound): cronjobs.batch "nope" not found'),
                          (("create", "cronjob", "x", "--image", "busybox"),
                           'error: required flag(s) "schedule" not set')):
        r = pkctl(*args)
        assert r.returncode != 0 and r.stderr.strip() == message, (args, r.stderr)
    r = pkctl("create", "cronjob", "x", "--image", "busybox", "--schedule", "every day")
    assert r.returncode != 0 and 'spec.schedule: Invalid value: "every day"' in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
