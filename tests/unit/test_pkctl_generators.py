"""Objects pkctl create builds from arguments."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from pkctl import generators
from pkctl.generators import GeneratorError
from pkctl.printers import to_yaml


@pytest.mark.parametrize("image, name", [("busybox", "busybox"), ("busybox:1.36", "busybox"),
                                         ("127.0.0.1:5000/team/my_app:v2", "my-app"),
                                         ("nginx@sha256:" + "a" * 64, "nginx")])
def test_container_names_come_from_the_image(image: str, name: str) -> None:
    assert generators.container_name(image) == name


def test_deployment_like_kubectl_create_deployment() -> None:
    d = generators.deployment("web", ["busybox", "reg:5000/busybox:2"], 3, 8080, None)
    assert d["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}} and d["spec"]["replicas"] == 3
    containers = d["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"], c["ports"]) for c in containers] == [
        ("busybox", "busybox", [{"containerPort": 8080}]),
        ("busybox-1", "reg:5000/busybox:2", [{"containerPort": 8080}])]
    assert "&id" not in to_yaml(d), "shared label maps print without YAML anchors"
    with_command = generators.deployment("job", ["busybox"], 1, None, ["sleep", "3600"])
    assert with_command["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "3600"]
    with pytest.raises(GeneratorError, match="image"):
        generators.deployment("web", [], 1, None, None)
    with pytest.raises(GeneratorError, match="multiple --image options and command"):
        generators.deployment("web", ["a", "b"], 1, None, ["true"])


def test_configmap_and_secret_from_literals_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "app.conf").write_text("level=debug\n")
    (tmp_path / "blob.bin").write_bytes(b"\xff\x00")
    cm = generators.configmap("cfg", ["mode=fast", "empty="], [str(tmp_path)])
    assert cm["data"] == {"mode": "fast", "empty": "", "app.conf": "level=debug\n"}
    assert cm["binaryData"] == {"blob.bin": base64.b64encode(b"\xff\x00").decode()}
    renamed = generators.configmap("cfg", [], [f"settings={tmp_path / 'app.conf'}"])
    assert renamed["data"] == {"settings": "level=debug\n"}
    s = generators.secret("s", ["password=hunter2"], [], "kubernetes.io/basic-auth")
    assert s["data"] == {"password": base64.b64encode(b"hunter2").decode()} and s["type"] == "kubernetes.io/basic-auth"
    for literals, files, message in ((["novalue"], [], "expected key=value"),
                                     (["a=1", "a=2"], [], 'cannot add key "a"'),
                                     (["bad key=1"], [], "not a valid key name"),
                                     ([], [str(tmp_path / "missing")], "no such file")):
        with pytest.raises(GeneratorError, match=message):
            generators.configmap("cfg", literals, files)


def test_job_and_cronjob_like_kubectl_create() -> None:
    job = generators.job("once", "busybox", ["echo", "hi"])
    assert job["spec"]["template"]["spec"] == {"containers": [{"name": "once", "image": "busybox", "resources": {},
                                                               "command": ["echo", "hi"]}],
                                               "restartPolicy": "Never"}
    with pytest.raises(GeneratorError, match="either --image or --from must be specified"):
        generators.job("once", None, None)
    cj = generators.cronjob("tick", "busybox", "@hourly", "OnFailure", None)
    assert cj["spec"]["schedule"] == "@hourly" and cj["spec"]["jobTemplate"]["metadata"] == {"name": "tick"}
    with pytest.raises(GeneratorError, match="invalid restart policy: Always"):
        generators.cronjob("tick", "busybox", "@hourly", "Always", None)
    source = {"metadata": {"name": "tick", "uid": "u1"}, "spec": {"jobTemplate": {
        "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}}, "spec": {"backoffLimit": 0}}}}
    manual = generators.job_from_cronjob("by-hand", source)
    assert manual["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual", "note": "x"}
    assert manual["metadata"]["labels"] == {"team": "a"} and manual["spec"] == {"backoffLimit": 0}
    assert manual["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick",
                                                      "uid": "u1", "controller": True}]


def test_docker_registry_secret_like_kubectl(tmp_path: Path) -> None:
    import json
    import subprocess
    args = ["secret", "docker-registry", "regcred", "--docker-server=127.0.0.1:5000", "--docker-username=bob",
            "--docker-password=p:w", "--docker-email=bob@example.com"]
    want = json.loads(subprocess.run(["kubectl", "create", *args, "--dry-run=client", "-o", "json"],
                                     capture_output=True, text=True, check=True, timeout=60).stdout)
    got = generators.docker_registry_secret("regcred", "127.0.0.1:5000", "bob", "p:w", "bob@example.com", [])
    assert got["type"] == want["type"] == "kubernetes.io/dockerconfigjson"
    assert got["data"] == want["data"]
    config = json.loads(base64.b64decode(got["data"][".dockerconfigjson"]))
    assert config["auths"]["127.0.0.1:5000"]["auth"] == base64.b64encode(b"bob:p:w").decode()
    hub = json.loads(base64.b64decode(generators.docker_registry_secret(
        "hub", "https://index.docker.io/v1/", "u", "p", None, [])["data"][".dockerconfigjson"]))
    assert list(hub["auths"]) == ["https://index.docker.io/v1/"] and "email" not in hub["auths"][
        "https://index.docker.io/v1/"]
    with pytest.raises(GeneratorError, match="--docker-username and --docker-password are required"):
        generators.docker_registry_secret("x", "reg", None, "p", None, [])
    (tmp_path / "config.json").write_text('{"auths": {}}')
    from_file = generators.docker_registry_secret("f", "reg", None, None, None,
                                                  [f".dockerconfigjson={tmp_path / 'config.json'}"])
    assert base64.b64decode(from_file["data"][".dockerconfigjson"]) == b'{"auths": {}}'
