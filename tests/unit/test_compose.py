"""Compose files -> project -> Kubernetes objects (pure: no cluster)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pkctl.compose.convert import convert
from pkctl.compose.model import ComposeError, interpolate, load

EXAMPLES = Path("/work/shared/docs-examples")


def write(tmp: Path, text: str, name: str = "docker-compose.yml") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def by_kind(objs: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="docs examples not on this machine")
def test_docs_example_with_named_volume(tmp_path: Path) -> None:
    proj = tmp_path / "My_Proj"
    proj.mkdir()
    shutil.copy(EXAMPLES / "compose-volume" / "docker-compose.yml", proj)
    project = load(proj / "docker-compose.yml", environ={})
    assert project.name == "my-proj"  # the directory's name, as a namespace
    plan = convert(project)
    assert plan.order == ["mongodb", "mi-app"]  # links imply start order
    objs = plan.objects()
    assert objs[0]["kind"] == "Namespace" and objs[0]["metadata"]["labels"] == {
        "com.docker.compose.project": "my-proj", "pod-security.kubernetes.io/enforce": "privileged"}
    assert set(by_kind(objs, "PersistentVolumeClaim")) == {"mongo-data"}
    deps, svcs = by_kind(objs, "Deployment"), by_kind(objs, "Service")
    assert set(deps) == set(svcs) == {"mi-app", "mongodb"}
    db = deps["mongodb"]["spec"]["template"]["spec"]
    c = db["containers"][0]
    assert c["image"] == "mongo"
    assert c["env"] == [{"name": "MONGO_INITDB_ROOT_USERNAME", "value": "dani"},
                        {"name": "MONGO_INITDB_ROOT_PASSWORD", "value": "clave"}]
    assert c["ports"] == [{"containerPort": 27017, "hostPort": 27017, "protocol": "TCP"}]
    assert c["volumeMounts"] == [{"name": "v0", "mountPath": "/data/db"}]
    assert db["volumes"] == [{"name": "v0", "persistentVolumeClaim": {"claimName": "mongo-data"}}]
    app = deps["mi-app"]["spec"]["template"]["spec"]["containers"][0]
    assert app["image"] == "pkube.local/my-proj-mi-app:latest" and project.services["mi-app"].build is not None
    assert deps["mi-app"]["spec"]["strategy"] == {"type": "Recreate"}  # a host port cannot surge
    assert svcs["mongodb"]["spec"]["ports"] == [{"name": "tcp-27017", "port": 27017, "targetPort": 27017,
                                                 "protocol": "TCP"}]
    for o in objs[1:]:
        assert o["metadata"]["labels"]["com.docker.compose.project"] == "my-proj"


def test_the_everyday_subset(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=1.2\nexport GREETING='hi there'\n")
    (tmp_path / "web.env").write_text("# comment\nFROM_FILE=yes\n")
    write(tmp_path, """
version: "3"
x-common: &common
  restart: always
services:
  web:
    <<: *common
    image: "busybox:${TAG}"
    command: httpd -f -p "${PORT:-8080}"
    entrypoint: ["/bin/sh", "-c"]
    ports: ["127.0.0.1:8080:8080", "5353:53/udp", "9000"]
    expose: ["7000"]
    environment: [GREETING, "EMPTY=", "MISSING_FROM_ENV"]
    env_file: web.env
    volumes: ["./site:/www:ro", "cache:/cache", "/scratch"]
    working_dir: /www
    user: "1000:1000"
    labels: {team: web}
    healthcheck: {test: ["CMD", "wget", "-q", "localhost:8080"], interval: 1m30s, timeout: 5s, retries: 2,
                  start_period: 500ms}
    deploy: {replicas: 2, resources: {limits: {cpus: "0.5", memory: 256M}}}
    depends_on:
      db: {condition: service_healthy}
  db:
    image: busybox
    restart: "no"
    profiles: []
  debug:
    image: busybox
    profiles: [debug]
volumes:
  cache: {}
""")
    project = load(tmp_path / "docker-compose.yml", environ={})
    assert set(project.services) == {"web", "db"}  # the debug profile is off
    web = project.services["web"]
    assert web.environment == {"GREETING": "hi there", "EMPTY": "", "FROM_FILE": "yes"}
    assert web.depends_on == {"db": "service_healthy"}
    plan = convert(project)
    assert plan.order == ["db", "web"]
    objs = plan.objects()
    dep = by_kind(objs, "Deployment")["web"]
    assert dep["spec"]["replicas"] == 2 and dep["metadata"]["annotations"] == {"team": "web"}
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["image"] == "busybox:1.2"
    assert c["command"] == ["/bin/sh", "-c"] and c["args"] == ["httpd", "-f", "-p", "8080"]
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP", "hostPort": 8080, "hostIP": "127.0.0.1"},
                          {"containerPort": 53, "protocol": "UDP", "hostPort": 5353},
                          {"containerPort": 9000, "protocol": "TCP"}, {"containerPort": 7000, "protocol": "TCP"}]
    assert c["workingDir"] == "/www" and c["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000}
    assert c["resources"] == {"limits": {"cpu": "0.5", "memory": "256Mi"}}
    assert c["readinessProbe"] == {"exec": {"command": ["wget", "-q", "localhost:8080"]}, "periodSeconds": 90,
                                   "timeoutSeconds": 5, "failureThreshold": 2, "initialDelaySeconds": 0}
    assert spec["volumes"] == [
        {"name": "v0", "hostPath": {"path": str(tmp_path / "site"), "type": "DirectoryOrCreate"}},
        {"name": "v1", "persistentVolumeClaim": {"claimName": "cache"}}, {"name": "v2", "emptyDir": {}}]
    assert c["volumeMounts"][0] == {"name": "v0", "mountPath": "/www", "readOnly": True}
    # restart: "no" runs once, as a bare Pod; a service without ports is a headless Service (its name resolves).
    db = by_kind(objs, "Pod")["db"]
    assert db["spec"]["restartPolicy"] == "Never"
    assert by_kind(objs, "Service")["db"]["spec"]["clusterIP"] == "None"
    with_debug = load(tmp_path / "docker-compose.yml", environ={}, profiles=["debug"])
    assert "debug" in with_debug.services


@pytest.mark.parametrize("text,message", [
    ("services:\n  web:\n    image: x\n    privileged: true\n", ":4: service 'web': unsupported key 'privileged'"),
    ("services:\n  web:\n    image: x\nsecrets: {}\n", ":4: top level: unsupported key 'secrets'"),
    ("services:\n  web:\n    image: x\n    volumes: [data:/d]\n", "undefined volume 'data'"),
    ("services:\n  web:\n    ports: ['80:80']\n", "neither an image nor build context"),
    ("services:\n  web:\n    image: x\n    depends_on: [db]\n", "depends on undefined service 'db'"),
    ("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
     "dependency cycle"),
    ("services:\n  My_Web:\n    image: x\n", ":2: service name 'My_Web' must be a DNS label"),
    ("services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n", ":3: required variable IMAGE is missing a value: set IMAGE"),
    ("services:\n  web:\n    image: x\n    ports: ['x:80']\n", ":4: invalid port publication"),
    ("services:\n  web:\n    image: x\n    user: nobody\n", ":4: user 'nobody': only numeric"),
    ("services:\n  web:\n    image: x\n    deploy: {mode: global}\n", ":4: service 'web' deploy: unsupported key 'mode'"),
])
def test_bad_files_name_the_key_and_line(tmp_path: Path, text: str, message: str) -> None:
    f = write(tmp_path, text)
    with pytest.raises(ComposeError, match=None) as e:
        convert(load(f, environ={}))
    assert message in str(e.value), str(e.value)


def test_interpolation() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("$A ${A} ${B:-x} ${E:-y} ${E-y} ${A:+set} $$A ${B}", env) == "1 1 x y  set $A "
    with pytest.raises(ComposeError, match="required variable B"):
        interpolate("${B?}", env)


def test_keys_without_effect_are_warned_about_and_grace_period(tmp_path: Path) -> None:
    f = write(tmp_path, "services:\n  web:\n    image: x\n    container_name: w\n    stop_grace_period: 1m\n"
                        "networks:\n  front:\n    internal: true\n")
    project = load(f, environ={})
    assert project.warnings == [f"{f}:8: network 'front': internal is ignored: pods keep their route out of the "
                                "cluster",
                                f"{f}:4: service 'web': container_name is ignored: pods are named by their Deployment"]
    spec = by_kind(convert(project).objects(), "Deployment")["web"]["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 60
    plain = load(write(tmp_path, "services:\n  web:\n    image: x\n"), environ={})
    assert by_kind(convert(plain).objects(), "Deployment")["web"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"] == 10  # Compose's stop timeout, not a pod's 30 s


@pytest.mark.parametrize("text,message", [
    ("services:\n  a: {image: x\n", ":3: invalid YAML: expected ',' or '}'"),
    ("services:\n  a:\n    image: x\n    ports: 80\n", ":4: ports must be a list"),
    ("services:\n  a:\n    image: x\n    deploy: {replicas: many}\n", ":4: deploy.replicas must be a non-negative"),
    ("services:\n  a:\n    image: x\n    ports: [{published: 80}]\n", ":2: service 'a': invalid value: missing key"),
    ("services:\n  a:\n    image: x\n    healthcheck: yes\n", ":4: healthcheck must be a mapping"),
])
def test_values_of_the_wrong_shape_are_errors_not_crashes(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ComposeError) as e:
        convert(load(write(tmp_path, text), environ={}))
    assert message in str(e.value), str(e.value)


NETWORKED = """
services:
  proxy:
    image: x
    ports: ["8080:80"]
    networks: [front]
  web:
    image: x
    links: ["db:database", "cache"]
    networks: [front, back]
  db:
    image: x
    networks:
      back:
        aliases: [store, sql]
  cache:
    image: x
networks:
  front: {}
  back:
    driver: bridge
"""


def test_networks_aliases_and_links_become_services_labels_and_network_policies(tmp_path: Path) -> None:
    project = load(write(tmp_path, NETWORKED), "shop", environ={})
    assert project.warnings == []
    objs = convert(project).objects()
    svcs = by_kind(objs, "Service")
    # every name resolves to the pods of the service it names: the link alias to db's, not to web's
    assert {name: s["spec"]["selector"]["com.docker.compose.service"] for name, s in svcs.items()} == {
        "proxy": "proxy", "web": "web", "db": "db", "store": "db", "sql": "db", "database": "db", "cache": "cache"}
    assert all(s["metadata"]["labels"]["com.docker.compose.service"] == s["spec"]["selector"][
        "com.docker.compose.service"] for s in svcs.values())  # `down` and orphans find them by service
    deps = by_kind(objs, "Deployment")

    def networks_of(name: str) -> set[str]:
        labels = deps[name]["spec"]["template"]["metadata"]["labels"]
        assert deps[name]["spec"]["selector"]["matchLabels"] == {"com.docker.compose.project": "shop",
                                                                 "com.docker.compose.service": name}
        return {k.removeprefix("com.docker.compose.network.") for k, v in labels.items()
                if k.startswith("com.docker.compose.network.") and v == "true"}
    assert {n: networks_of(n) for n in deps} == {"proxy": {"front"}, "web": {"front", "back"}, "db": {"back"},
                                                 "cache": {"default"}}
    policies = by_kind(objs, "NetworkPolicy")
    assert set(policies) == {"default", "front", "back", "proxy-published"}
    for net in ("default", "front", "back"):
        members = {"matchLabels": {f"com.docker.compose.network.{net}": "true"}}
        assert policies[net]["apiVersion"] == "networking.k8s.io/v1"
        assert policies[net]["metadata"]["labels"] == {"com.docker.compose.project": "shop",
                                                       "com.docker.compose.network": net}
        assert policies[net]["spec"] == {"podSelector": members, "policyTypes": ["Ingress"],
                                         "ingress": [{"from": [{"podSelector": members}]}]}
    # a published port is open to anyone, as Docker publishes it
    assert policies["proxy-published"]["spec"] == {
        "podSelector": {"matchLabels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "proxy"}},
        "policyTypes": ["Ingress"], "ingress": [{"ports": [{"protocol": "TCP", "port": 80}]}]}
    # the policies come before the workloads they isolate
    kinds = [o["kind"] for o in objs]
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")


def test_a_host_network_service_is_on_no_network(tmp_path: Path) -> None:
    project = load(write(tmp_path, "services:\n  web:\n    image: x\n    network_mode: host\n"
                                   "    ports: ['80:80']\n"), environ={})
    objs = convert(project).objects()
    assert by_kind(objs, "NetworkPolicy") == {}
    assert "com.docker.compose.network.default" not in \
        by_kind(objs, "Deployment")["web"]["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("text,message", [
    ("services:\n  web:\n    image: x\nnetworks:\n  ext:\n    external: true\n",
     ":6: network 'ext': external networks are not supported"),
    ("services:\n  web:\n    image: x\nnetworks:\n  o:\n    driver: overlay\n",
     ":6: network 'o': driver 'overlay' is not supported"),
    ("services:\n  web:\n    image: x\n    networks: [back]\n",
     ":4: service 'web' refers to undefined network back"),
    ("services:\n  web:\n    image: x\n    network_mode: host\n    networks: [default]\n",
     ":5: service 'web': network_mode and networks are mutually exclusive"),
    ("services:\n  web:\n    image: x\n    network_mode: 'service:db'\n", ":4: network_mode 'service:db'"),
    ("services:\n  web:\n    image: x\n    network_mode: bridge\n    networks: [default]\n",
     ":5: service 'web': network_mode and networks are mutually exclusive"),
    ("services:\n  web:\n    image: x\n    networks:\n      default:\n        ipv4_address: 10.0.0.5\n",
     ":6: service 'web' network 'default': unsupported key 'ipv4_address'"),
    ("services:\n  web:\n    image: x\n    networks:\n      default:\n        aliases: [Bad_Name]\n",
     ":6: network alias name 'Bad_Name' must be a DNS label"),
    ("services:\n  web:\n    image: x\n    networks:\n      default:\n        aliases: [db]\n  db:\n    image: x\n",
     "alias 'db' on network 'default': 'db' already names service 'db'"),
    ("services:\n  web:\n    image: x\n    links: ['db:cache']\n  db:\n    image: x\n  cache:\n    image: x\n",
     "link db:cache: 'cache' already names service 'cache'"),
    ("services:\n  web:\n    image: x\nnetworks:\n  a+b: {}\n", ":5: network name 'a+b'"),
])
def test_bad_networks_are_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ComposeError) as e:
        convert(load(write(tmp_path, text), environ={}))
    assert message in str(e.value), str(e.value)


def test_a_built_images_id_is_on_its_pods_so_a_rebuild_rolls_them(tmp_path: Path) -> None:
    project = load(write(tmp_path, "services:\n  web:\n    build: .\n    labels: {team: a}\n  db:\n    image: x\n"),
                   environ={})
    assert "annotations" not in by_kind(convert(project).objects(), "Deployment")["db"]["spec"]["template"]["metadata"]
    project.services["web"].image_id = "sha256:" + "1" * 64
    first = by_kind(convert(project).objects(), "Deployment")["web"]["spec"]["template"]["metadata"]
    assert first["annotations"] == {"team": "a", "com.docker.compose.image": "sha256:" + "1" * 64}
    project.services["web"].image_id = "sha256:" + "2" * 64
    second = by_kind(convert(project).objects(), "Deployment")["web"]["spec"]["template"]["metadata"]
    assert second != first
