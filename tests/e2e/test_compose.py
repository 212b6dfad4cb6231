"""End to end: the two Compose files of the docs examples run by `pkctl compose` on a local cluster.

The files are used as they are, except `image: mongo` (a public registry this machine cannot reach): a local
stand-in built FROM the bundled busybox serves /data/db over HTTP on 27017 and writes a random token there on
first start. The app (`build: .`, a small Dockerfile FROM the bundled busybox) fetches http://mongodb:27017/
by the service's name and serves what it got on 3000, so the published port answering with the database's
token shows: the image built, both services up, the port published on the host, and `mongodb` resolved.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from images.store import ImageStore
from tests.e2e.helpers import ROOT, Cluster, run
from tests.support.proxy import fetch_text as fetch
from tests.support.python_image import (SimpleIndex, ensure_python_image, host_python, watchlist_app,
                                        watchlist_project)
from tests.util import free_port, unique, wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler",
                                                                  "kubelet", "proxy", "dns")),
                       reason="needs every component of the local cluster"),
]

EXAMPLES = Path("/work/shared/docs-examples")
if not EXAMPLES.is_dir():
    EXAMPLES = ROOT.parent / "shared" / "docs-examples"
DB_IMAGE = "pkube.local/mongo-standin:latest"

APP_DOCKERFILE = """FROM pkube.local/busybox:latest
COPY app.sh /app.sh
CMD ["sh", "/app.sh"]
"""
APP_SCRIPT = """echo app started
mkdir -p /www
while true; do
  wget -q -O /tmp/db http://mongodb:27017/ && mv /tmp/db /www/index.html
  sleep 1
done &
exec httpd -f -p 3000 -h /www
"""
DB_DOCKERFILE = """FROM pkube.local/busybox:latest
CMD ["sh", "-c", "mkdir -p /data/db; [ -f /data/db/index.html ] || echo db-$RANDOM$RANDOM > /data/db/index.html; echo db ready; exec httpd -f -p 27017 -h /data/db"]
"""


@pytest.fixture(scope="module")
def images(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster's image store with the bundled busybox and the database stand-in."""
    root = cluster.home / "images"
    run("image", "build-busybox", "--root", str(root), timeout=300)
    ctx = tmp_path_factory.mktemp("db")
    (ctx / "Dockerfile").write_text(DB_DOCKERFILE)
    run("image", "build", "--root", str(root), "-t", DB_IMAGE, str(ctx), timeout=300)
    return root


@pytest.fixture
def project(request: pytest.FixtureRequest, tmp_path: Path, images: Path) -> Iterator[Path]:
    """The example's docker-compose.yml in a project directory of a unique name, with the app's build context."""
    example = EXAMPLES / request.param
    if not example.is_dir():
        pytest.skip(f"{example} not on this machine")
    d = tmp_path / unique("proj")
    d.mkdir()
    text = (example / "docker-compose.yml").read_text()
    assert "image: mongo\n" in text
    (d / "docker-compose.yml").write_text(text.replace("image: mongo\n", f"image: {DB_IMAGE}\n"))
    (d / "Dockerfile").write_text(APP_DOCKERFILE)
    (d / "app.sh").write_text(APP_SCRIPT)
    yield d


def compose(cluster: Cluster, project: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    p = subprocess.run([sys.executable, "-m", "pkctl.main", "compose", *argv], cwd=project, env=env,
                       capture_output=True, text=True, timeout=400)
    if check and p.returncode != 0:
        raise AssertionError(f"compose {' '.join(argv)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    assert "Traceback" not in p.stderr
    return p


def exists(cluster: Cluster, path: str) -> bool:
    return cluster.api(path)[0] == 200


def project_pvs(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    code, body = cluster.api("/api/v1/persistentvolumes")
    assert code == 200, body
    return [pv for pv in body["items"] if (pv["spec"].get("claimRef") or {}).get("namespace") == ns]


def up_and_answering(cluster: Cluster, project: Path) -> str:
    out = compose(cluster, project, "up", "-d")
    assert "Service mi-app  Started" in out.stdout and "Service mongodb  Started" in out.stdout, out.stdout
    # The app got the database's page through the name `mongodb`, and both published ports answer on the host.
    token = wait_for_sync(lambda: (t := fetch("http://127.0.0.1:3000/")) and t.startswith("db-") and t,
                          timeout=60, message="the app on the published port 3000 serving what mongodb said")
    assert fetch("http://127.0.0.1:27017/") == token
    return str(token)


@pytest.mark.parametrize("project", ["compose-app", "compose-volume"], indirect=True)
def test_docs_example_up_ps_logs_exec_down(cluster: Cluster, project: Path) -> None:
    ns = project.name
    first = compose(cluster, project, "up", "-d")
    assert "Building mi-app" in first.stdout
    compose(cluster, project, "down")
    token = up_and_answering(cluster, project)

    ps = compose(cluster, project, "ps").stdout.splitlines()
    assert ps[0].split() == ["NAME", "IMAGE", "SERVICE", "STATUS", "PORTS"]
    rows = {line.split()[2]: line for line in ps[1:]}
    assert set(rows) == {"mi-app", "mongodb"}
    assert "running" in rows["mi-app"] and "0.0.0.0:3000->3000/tcp" in rows["mi-app"]
    assert "0.0.0.0:27017->27017/tcp" in rows["mongodb"]

    logs = compose(cluster, project, "logs", "mi-app").stdout
    assert "| app started" in logs and "db ready" not in logs
    assert compose(cluster, project, "exec", "mongodb", "--", "cat", "/data/db/index.html").stdout.strip() == token
    assert "MONGO_INITDB_ROOT_USERNAME=dani" in compose(cluster, project, "exec", "mongodb", "--", "env").stdout

    volume = "volumes:" in (project / "docker-compose.yml").read_text()
    down = compose(cluster, project, "down")
    assert fetch("http://127.0.0.1:3000/") is None
    if volume:
        assert "Volume mongo-data  Kept" in down.stdout
        assert exists(cluster, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/mongo-data")
        # The data in the named volume survives down and up.
        assert up_and_answering(cluster, project) == token
        down = compose(cluster, project, "down", "-v")
        assert "Volume mongo-data  Removed" in down.stdout
        wait_for_sync(lambda: not project_pvs(cluster, ns), timeout=60, message="the volume's PV deleted")
    # Nothing of the project is left: namespace (and with it every object), ports, rules.
    assert not exists(cluster, f"/api/v1/namespaces/{ns}")
    table = cluster.config()["proxy_table"]
    rules = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True).stdout
    assert "tcp . 3000" not in rules and "tcp . 27017" not in rules
    assert "Nothing to remove" in compose(cluster, project, "down").stdout


@pytest.mark.parametrize("project", ["compose-volume"], indirect=True)
def test_bad_file_is_one_line_error_and_creates_nothing(cluster: Cluster, project: Path) -> None:
    (project / "docker-compose.yml").write_text("services:\n  web:\n    image: x\n    privileged: true\n")
    p = compose(cluster, project, "up", "-d", check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == "error: docker-compose.yml:4: service 'web': unsupported key 'privileged'"
    assert not exists(cluster, f"/api/v1/namespaces/{project.name}")


FEATURES = """
services:
  db:
    image: pkube.local/busybox:latest
    command: ["sh", "-c", "sleep 3; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 1
  init:
    image: pkube.local/busybox:latest
    restart: "no"
    command: echo initialised
  web:
    image: pkube.local/busybox:${WEB_TAG:-latest}
    entrypoint: ["sh", "-c"]
    command: ["exec httpd -f -p 8080 -h /site"]
    ports: ["${WEB_PORT}:8080"]
    volumes: ["./site:/site:ro"]
    environment:
      MODE: ${MODE:-dev}
    env_file: [web.env]
    working_dir: /site
    depends_on:
      db: {condition: service_healthy}
      init: {condition: service_completed_successfully}
  worker:
    image: pkube.local/busybox:latest
    command: ["sleep", "3600"]
    deploy: {replicas: 2, resources: {limits: {memory: 64M}}}
"""


@pytest.fixture
def features(tmp_path: Path, images: Path) -> Path:
    d = tmp_path / unique("feat")
    (d / "site").mkdir(parents=True)
    (d / "site" / "index.html").write_text("from the bind mount\n")
    (d / "docker-compose.yml").write_text(FEATURES)
    (d / ".env").write_text(f"WEB_PORT={free_port()}\nMODE=prod\n")
    (d / "web.env").write_text("FROM_FILE=yes\n")
    return d


def test_healthcheck_dependencies_bind_mount_env_and_replicas(cluster: Cluster, features: Path) -> None:
    ns, port = features.name, int((features / ".env").read_text().split("\n")[0].split("=")[1])
    out = compose(cluster, features, "up", "-d").stdout
    lines = out.splitlines()
    assert lines.index(" ✔ Service db  Waiting (service_healthy)") < lines.index(" ✔ Service web  Created"), out
    # web was created only once db was Ready (its healthcheck is its readiness probe) and init had completed.
    code, pods = cluster.api(f"/api/v1/namespaces/{ns}/pods?labelSelector=com.docker.compose.service%3Ddb")
    ready_at = next(c["lastTransitionTime"] for c in pods["items"][0]["status"]["conditions"] if c["type"] == "Ready")
    code, web = cluster.api(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert web["metadata"]["creationTimestamp"] >= ready_at
    code, init = cluster.api(f"/api/v1/namespaces/{ns}/pods/init")
    assert init["status"]["phase"] == "Succeeded"

    assert wait_for_sync(lambda: fetch(f"http://127.0.0.1:{port}/") == "from the bind mount", timeout=60)
    env = compose(cluster, features, "exec", "web", "--", "sh", "-c", "echo $MODE $FROM_FILE $(pwd)").stdout
    assert env.strip() == "prod yes /site"
    assert compose(cluster, features, "exec", "web", "--", "touch", "/site/x", check=False).returncode != 0  # :ro

    code, workers = cluster.api(f"/api/v1/namespaces/{ns}/pods?labelSelector=com.docker.compose.service%3Dworker")
    assert len(workers["items"]) == 2
    assert workers["items"][0]["spec"]["containers"][0]["resources"]["limits"] == {"memory": "64Mi"}
    ps = compose(cluster, features, "ps").stdout
    assert any(line.startswith("init ") and "exited (0)" in line for line in ps.splitlines()), ps
    assert "initialised" in compose(cluster, features, "logs", "init").stdout

    compose(cluster, features, "down")
    assert not exists(cluster, f"/api/v1/namespaces/{ns}")
    assert fetch(f"http://127.0.0.1:{port}/") is None


def test_up_attached_follows_logs_until_interrupted(cluster: Cluster, tmp_path: Path, images: Path) -> None:
    d = tmp_path / unique("att")
    d.mkdir()
    # `$$`: a literal `$` for the shell (Compose interpolates `$i` itself).
    (d / "compose.yaml").write_text("services:\n  ticker:\n    image: pkube.local/busybox:latest\n"
                                    "    command: [sh, -c, 'i=0; while true; do echo tick $$i; i=$$((i+1)); sleep 1; done']\n")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.Popen([sys.executable, "-m", "pkctl.main", "compose", "up"], cwd=d, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # bounded by the tick loop; the test's timeout guards a hang
            seen.append(line)
            if "| tick 2" in line:
                break
            assert len(seen) < 100, seen
        assert any(line.startswith("Attaching to ticker") for line in seen), seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Detaching leaves the service running, as the message said; down removes it.
    assert "running" in compose(cluster, d, "ps").stdout
    compose(cluster, d, "down")
    assert not exists(cluster, f"/api/v1/namespaces/{d.name}")


def test_orphans_are_reported_and_removed_on_request(cluster: Cluster, tmp_path: Path, images: Path) -> None:
    d = tmp_path / unique("orph")
    d.mkdir()
    two = ("services:\n  a:\n    image: pkube.local/busybox:latest\n    command: [sleep, '3600']\n"
           "  b:\n    image: pkube.local/busybox:latest\n    command: [sleep, '3600']\n")
    (d / "compose.yaml").write_text(two)
    compose(cluster, d, "up", "-d")
    (d / "compose.yaml").write_text(two.split("  b:")[0])
    warned = compose(cluster, d, "up", "-d")
    assert "found orphan objects (deployment/b, service/b)" in warned.stderr
    assert exists(cluster, f"/apis/apps/v1/namespaces/{d.name}/deployments/b")
    removed = compose(cluster, d, "up", "-d", "--remove-orphans")
    assert "Deployment b  Removed (orphan)" in removed.stdout
    assert not exists(cluster, f"/apis/apps/v1/namespaces/{d.name}/deployments/b")
    compose(cluster, d, "down")
    assert not exists(cluster, f"/api/v1/namespaces/{d.name}")


NETWORKS = """
services:
  proxy:
    image: pkube.local/busybox:latest
    command: [sleep, "3600"]
    networks: [front]
  db:
    image: pkube.local/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo db-answers > /www/index.html && exec httpd -f -p 80 -h /www"]
    networks:
      back:
        aliases: [store]
  web:
    image: pkube.local/busybox:latest
    command: [sleep, "3600"]
    links: ["db:database"]
    networks: [front, back]
networks:
  front: {}
  back: {}
"""


def test_service_names_network_aliases_and_link_aliases_resolve(cluster: Cluster, tmp_path: Path,
                                                                images: Path) -> None:
    d = tmp_path / unique("nets")
    d.mkdir()
    (d / "compose.yaml").write_text(NETWORKS)
    config = compose(cluster, d, "config")
    assert config.stdout.count("kind: NetworkPolicy") == 2 and "ignored" not in config.stderr
    compose(cluster, d, "up", "-d")

    def fetch_db(client: str, name: str) -> str:
        p = compose(cluster, d, "exec", client, "--", "timeout", "5", "wget", "-q", "-O", "-", f"http://{name}/",
                    check=False)
        assert "bad address" not in p.stderr, p.stderr  # the name always resolves
        return p.stdout
    try:
        for name in ("db", "store", "database"):  # the service, its alias on `back`, web's link alias for it
            wait_for_sync(lambda: "db-answers" in fetch_db("web", name), timeout=30,
                          message=f"web reaching db as {name!r}")
        # proxy is only on `front`: the name resolves (names are project-wide) but db, only on `back`,
        # takes nothing from it once the node enforces the network's policy
        wait_for_sync(lambda: "db-answers" not in fetch_db("proxy", "db"), timeout=30,
                      message="proxy (front) kept out of db (back)")
        assert "db-answers" in fetch_db("web", "db")  # web is on both networks
        # an alias the file drops is an orphan Service
        (d / "compose.yaml").write_text(NETWORKS.replace("        aliases: [store]\n", ""))
        assert "found orphan objects (service/store)" in compose(cluster, d, "up", "-d").stderr
        assert "Service store  Removed (orphan)" in compose(cluster, d, "up", "-d", "--remove-orphans").stdout
        assert not exists(cluster, f"/api/v1/namespaces/{d.name}/services/store")
    finally:
        compose(cluster, d, "down")
    assert not exists(cluster, f"/api/v1/namespaces/{d.name}")


@pytest.fixture
def python_app(tmp_path: Path, images: Path) -> Iterator[tuple[Path, SimpleIndex]]:
    """A project directory with the model Dockerfile FROM the local Python and its index of two wheels."""
    model = EXAMPLES / "flask-watchlist" / "Dockerfile"
    if host_python() is None or not model.is_file():
        pytest.skip("needs the host's /usr/bin/python3 with Debian's pip (python3-pip) and the docs example")
    base = ensure_python_image(ImageStore(images), tmp_path)
    index = SimpleIndex(tmp_path / "index")
    d = tmp_path / unique("flask")
    watchlist_project(d, model, base, index)
    (d / "docker-compose.yml").write_text(f"services:\n  web:\n    build: .\n    ports: [\"{free_port()}:5000\"]\n")
    try:
        yield d, index
    finally:
        index.close()


def base_version() -> str:
    found = host_python()
    assert found is not None
    return found[1]


def test_flask_style_app_on_local_python_base(cluster: Cluster, python_app: tuple[Path, SimpleIndex]) -> None:
    d, index = python_app
    port = (d / "docker-compose.yml").read_text().split('"')[1].split(":")[0]
    try:
        up = compose(cluster, d, "up", "-d").stdout
        assert "RUN --mount=type=cache,target=/root/.cache/pip pip3 install -r requirements.txt" in up, up
        assert "Successfully installed minihttp-0.1 watchlist-dep-1.0" in up and "initialised 3 movies" in up, up
        assert index.hits.get("/wheels/minihttp-0.1-py3-none-any.whl") == 1
        page = wait_for_sync(lambda: fetch(f"http://127.0.0.1:{port}/"), timeout=60,
                             message=f"the app answering on the published port {port}")
        assert page == "watchlist 1.0: Alien, Brazil, Heat (first)"
        logs = compose(cluster, d, "logs", "web").stdout
        assert "[INFO] Listening at: http://0.0.0.0:5000" in logs and logs.count("Booting worker") == 2, logs
        version = base_version()
        py = compose(cluster, d, "exec", "web", "--", "python3", "-c",
                     "import platform, watchlist_dep; print(platform.python_version(), watchlist_dep.__file__)")
        assert py.stdout.startswith(version + "."), py.stdout
        assert py.stdout.split()[1] == f"/usr/local/lib/python{version}/dist-packages/watchlist_dep/__init__.py"
        # A code change: the requirements layer comes from the build cache, the code and init steps run again.
        (d / "app.py").write_text(watchlist_app("second"))
        rebuilt = compose(cluster, d, "build", "web").stdout
        assert "#4 CACHED" in rebuilt and "#5 DONE " in rebuilt and "initialised 3 movies" in rebuilt, rebuilt
        assert index.hits.get("/wheels/minihttp-0.1-py3-none-any.whl") == 1
        compose(cluster, d, "up", "-d")
        wait_for_sync(lambda: fetch(f"http://127.0.0.1:{port}/") == "watchlist 1.0: Alien, Brazil, Heat (second)",
                      timeout=60, message="the rebuilt image serving after up")
    finally:
        compose(cluster, d, "down")
    assert not exists(cluster, f"/api/v1/namespaces/{d.name}")
    code, pods = cluster.api(f"/api/v1/namespaces/{d.name}/pods")
    assert code == 404 or not pods["items"]
    assert fetch(f"http://127.0.0.1:{port}/") is None
    rules = subprocess.run(["nft", "list", "table", "ip", cluster.config()["proxy_table"]], capture_output=True,
                           text=True).stdout
    assert rules and f"tcp . {port}" not in rules
