"""Jobs and CronJobs with the real kubectl: typed creates with a command and from a cron job, the columns of
`kubectl get`, and server-side errors as kubectl prints them."""
from __future__ import annotations

import json

from tests.support.kubectl import Kubectl


def test_kubectl_create_job_from_cronjob_and_get_columns(kubectl: Kubectl, ns: str) -> None:
    kubectl("create", "-n", ns, "cronjob", "nightly", "--image=busybox:1.36", "--schedule=@daily", "--restart=Never",
            "--", "date")
    nightly = json.loads(kubectl("get", "-n", ns, "cronjob/nightly", "-o", "json").stdout)
    assert nightly["spec"]["jobTemplate"]["metadata"]["name"] == "nightly"
    assert nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert nightly["spec"]["successfulJobsHistoryLimit"] == 3
    kubectl("create", "-n", ns, "job", "manual", "--from=cronjob/nightly")
    kubectl("create", "-n", ns, "job", "echo", "--image=busybox:1.36", "--", "echo", "hi")
    manual = json.loads(kubectl("get", "-n", ns, "job/manual", "-o", "json").stdout)
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert manual["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert manual["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]
    echo = json.loads(kubectl("get", "-n", ns, "job/echo", "-o", "json").stdout)
    assert echo["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    assert echo["spec"]["backoffLimit"] == 6 and echo["spec"]["selector"]["matchLabels"]

    jobs = kubectl("get", "-n", ns, "jobs").stdout.splitlines()
    assert jobs[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert sorted(line.split()[0] for line in jobs[1:]) == ["echo", "manual"]
    wide = kubectl("get", "-n", ns, "cronjobs", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE",
                               "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[:6] == ["nightly", "@daily", "<none>", "False", "0", "<none>"]
    assert "cronjobs" in kubectl("api-resources", "--api-group=batch").stdout

    r = kubectl("create", "-n", ns, "cronjob", "bad", "--image=busybox", "--schedule=61 * * * *", ok=False)
    assert r.returncode != 0 and 'spec.schedule: Invalid value: "61 * * * *"' in r.stderr, r.stderr
    r = kubectl("patch", "-n", ns, "job/echo", "--type=merge", "-p",
                '{"spec":{"template":{"spec":{"containers":[{"name":"echo","image":"busybox:2"}]}}}}', ok=False)
    assert "spec.template: Invalid value" in r.stderr and "field is immutable" in r.stderr, r.stderr
    described = kubectl("describe", "-n", ns, "job/echo").stdout
    assert "Pods Statuses:" in described and "Completion Mode:  NonIndexed" in described, described
    described = kubectl("describe", "-n", ns, "cronjob/nightly").stdout
    assert "Schedule:" in described and "@daily" in described, described
    everything = kubectl("get", "all", "-n", ns).stdout
    assert "job.batch/echo" in everything and "cronjob.batch/nightly" in everything, everything
