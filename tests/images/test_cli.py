"""`pkctl image ...` end to end, as a user runs it (subprocess, real store directory)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from images.busybox import BUSYBOX_IMAGE
from images.store import ImageStore
from pkctl.main import main as pkctl_main
from tests.images.registry_fixture import RegistryServer
from tests.util import unique

pytestmark = pytest.mark.root


def pkctl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pkctl.main", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_build_ls_inspect_tag_save_load_rm_prune(busybox_store: ImageStore, tmp_path: Path) -> None:
    root = tmp_path / "store"
    busybox_store.save(BUSYBOX_IMAGE, tmp_path / "bb.tar")
    r = pkctl("image", "load", "--root", root, "-i", tmp_path / "bb.tar")
    assert r.returncode == 0, r.stderr
    assert "Loaded image: pkube.local/busybox:latest" in r.stdout

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nARG WHO\nRUN echo hi $WHO > /hi\n"
                                    "LABEL a=b\nEXPOSE 80\nCMD [\"cat\", \"/hi\"]\n")
    r = pkctl("image", "build", "--root", root, "-t", "web:1", "--build-arg", "WHO=you", ctx)
    assert r.returncode == 0, r.stderr
    assert "#2 [2/2] RUN echo hi $WHO > /hi\n" in r.stdout
    assert "Successfully tagged docker.io/library/web:1" in r.stdout

    r = pkctl("image", "ls", "--root", root)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert {tuple(line.split()[:2]) for line in lines[1:]} == {("pkube.local/busybox", "latest"), ("web", "1")}

    r = pkctl("image", "inspect", "--root", root, "web:1")
    [doc] = json.loads(r.stdout)
    assert doc["RepoTags"] == ["docker.io/library/web:1"]
    assert doc["Config"]["Cmd"] == ["cat", "/hi"] and doc["Config"]["Labels"] == {"a": "b"}
    assert doc["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert len(doc["RootFS"]["Layers"]) == len(busybox_store.get(BUSYBOX_IMAGE).layers) + 1

    assert pkctl("image", "tag", "--root", root, "web:1", "localhost:5000/web:prod").returncode == 0
    assert "localhost:5000/web" in pkctl("image", "ls", "--root", root).stdout
    r = pkctl("image", "save", "--root", root, "web:1", "localhost:5000/web:prod", "-o", tmp_path / "web.tar")
    assert r.returncode == 0, r.stderr

    r = pkctl("image", "rm", "--root", root, "web:1", "localhost:5000/web:prod")
    assert r.returncode == 0, r.stderr
    assert "Untagged: docker.io/library/web:1" in r.stdout and "Deleted 1 layers" in r.stdout
    r = pkctl("image", "load", "--root", root, "-i", tmp_path / "web.tar")
    assert "Loaded image: localhost:5000/web:prod" in r.stdout
    assert ImageStore(root).get("web:1").id == doc["Id"]

    # Through pipes, as `pkctl image save X | ssh node pkctl image load` would use them.
    saved = subprocess.run([sys.executable, "-m", "pkctl.main", "image", "save", "--root", str(root), "web:1"],
                           capture_output=True, timeout=120)
    assert saved.returncode == 0 and saved.stdout[257:262] == b"ustar"
    other = tmp_path / "other"
    loaded = subprocess.run([sys.executable, "-m", "pkctl.main", "image", "load", "--root", str(other)],
                            input=saved.stdout, capture_output=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert ImageStore(other).get("web:1").id == doc["Id"] and os.listdir(other / "tmp") == []


@pytest.mark.parametrize("args, message", [
    (["image", "inspect", "nosuch"], "error: no such image: nosuch"),
    (["image", "rm", "nosuch:1"], "error: image 'nosuch:1' not found in the local store"),
    (["image", "tag", "nosuch", "x"], "error: image 'nosuch' not found"),
    (["image", "tag", "nosuch", "Bad Name"], "error: invalid image reference"),
    (["image", "load", "-i", "/nonexistent.tar"], "error: /nonexistent.tar: no such file"),
    (["image", "build", "-t", "UPPER", "."], "error: invalid image reference 'UPPER'"),
    (["image", "build", "--build-arg", "=x", "."], "error: invalid --build-arg '=x'"),
])
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                 message: str) -> None:
    # In-process (same entry point as the console script) to keep the many error cases fast.
    code = pkctl_main([*args[:2], "--root", str(tmp_path / "store"), *args[2:]])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(message), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_push_and_pull(busybox_store: ImageStore, tmp_path: Path, registry_server: RegistryServer) -> None:
    name = f"{registry_server.host}/pkt/{unique('cli')}:1"
    busybox_store.tag(BUSYBOX_IMAGE, name)
    try:
        r = pkctl("image", "push", "--root", busybox_store.root, name)
        assert r.returncode == 0, r.stderr
        assert f"Pushed {name}" in r.stdout
    finally:
        busybox_store.remove(name)
    r = pkctl("image", "pull", "--root", tmp_path / "store", name)
    assert r.returncode == 0, r.stderr
    assert f"{len(busybox_store.get(BUSYBOX_IMAGE).layers)} layers downloaded" in r.stdout
    r = pkctl("image", "pull", "--root", tmp_path / "store", name)
    assert "0 layers downloaded" in r.stdout
    r = pkctl("image", "pull", "--root", tmp_path / "store", f"{registry_server.host}/pkt/absent:1")
    assert r.returncode == 1 and r.stderr.startswith("error: manifest unknown")


def test_build_busybox_is_one_command_and_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first = pkctl("image", "build-busybox", "--root", root)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == BUSYBOX_IMAGE
    again = pkctl("image", "build-busybox", "--root", root)
    assert again.returncode == 0 and again.stdout.strip() == BUSYBOX_IMAGE
    assert [img.name for img in ImageStore(root).list()] == [BUSYBOX_IMAGE]


def local_cluster_home(tmp_path: Path, workers: int) -> Path:
    """What `pkctl cluster up --nodes N` leaves for `pkctl image` to find: a home with its config and kubeconfig."""
    from dataclasses import asdict

    from pkctl.cluster.home import ClusterConfig, Worker
    home = tmp_path / unique("home")
    home.mkdir()
    cfg = ClusterConfig(2379, 2380, 6443, node_name="first",
                        workers=[Worker(f"first-worker{i}", i + 2, f"10.0.0.{i + 2}", f"ns{i}", f"v{i}")
                                 for i in range(workers)])
    (home / "config.json").write_text(json.dumps(asdict(cfg)))
    (home / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    return home


def test_load_and_build_go_to_the_nodes_of_the_kubeconfigs_cluster(busybox_store: ImageStore, tmp_path: Path) -> None:
    home = local_cluster_home(tmp_path, workers=1)
    busybox_store.save(BUSYBOX_IMAGE, tmp_path / "bb.tar")
    env = {**os.environ, "KUBECONFIG": str(home / "kubeconfig")}

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pkctl.main", *map(str, args)], capture_output=True, text=True,
                              timeout=120, env=env)
    # no --root: the cluster's store (both nodes of a local cluster read <home>/images), not $PKUBE_HOME's
    r = run("image", "load", "--all-nodes", tmp_path / "bb.tar")
    assert r.returncode == 0, r.stderr
    assert ImageStore(home / "images").resolve(BUSYBOX_IMAGE) is not None
    assert "pkube.local/busybox   latest" in run("image", "ls").stdout
    for args, message in ((["--all-nodes", "--root", tmp_path / "x"], "error: --all-nodes and --root are mutually"),
                          (["--all-nodes", "--kubeconfig", tmp_path / "kubeconfig"],
                           "error: --all-nodes: the kubeconfig is not a local cluster's")):
        (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
        r = run("image", "load", *args, tmp_path / "bb.tar")
        assert r.returncode == 1 and r.stderr.startswith(message) and len(r.stderr.splitlines()) == 1, r.stderr


def test_copy_images_fills_the_stores_that_lack_them(busybox_store: ImageStore, tmp_path: Path) -> None:
    from pkctl.cluster.images import copy_images
    other = tmp_path / "node2-images"
    lines: list[str] = []
    copy_images([BUSYBOX_IMAGE], busybox_store, [busybox_store.root, other], progress=lines.append)
    assert ImageStore(other).get(BUSYBOX_IMAGE).id == busybox_store.get(BUSYBOX_IMAGE).id
    assert lines == [f"{BUSYBOX_IMAGE} copied to {other}"]
    copy_images([BUSYBOX_IMAGE], busybox_store, [busybox_store.root, other], progress=lines.append)
    assert len(lines) == 1  # already there: not copied again
