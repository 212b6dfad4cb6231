"""Kubelet volume files on a temp dir: atomic configMap/secret layout, items/modes, downwardAPI, hostPath types,
subPath (no mounts: emptyDir on disk only)."""
from __future__ import annotations

import base64
import errno
import os
from pathlib import Path

import pytest

from kubelet.env import ConfigError
from kubelet import volumes
from kubelet.volumes import VolumeManager, open_subpath
from pklib import safeopen

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "labels": {"a": "1", "b": "2"}},
       "spec": {"containers": [{"name": "c"}], "volumes": []}}


def objects(store: dict):
    async def get(plural: str, name: str):
        return store.get((plural, name))
    return get


async def setup(tmp_path: Path, volumes: list, store: dict | None = None) -> dict[str, Path]:
    pod = {**POD, "spec": {**POD["spec"], "volumes": volumes}}
    get = objects(store or {})
    return await VolumeManager(tmp_path).setup(pod, get, get, "10.0.0.2", "192.0.2.1", {})


async def test_configmap_items_modes_and_atomic_update(tmp_path: Path) -> None:
    store = {("configmaps", "cm"): {"data": {"a.conf": "one", "b": "two"}}}
    vols = [{"name": "v", "configMap": {"name": "cm", "items": [{"key": "a.conf", "path": "sub/a", "mode": 0o600}]}}]
    target = (await setup(tmp_path, vols, store))["v"]
    assert (target / "sub/a").read_text() == "one" and not (target / "b").exists()
    assert (target / "sub").is_symlink() and (target / "..data").is_symlink()
    assert oct((target / "sub/a").stat().st_mode & 0o777) == oct(0o600)
    first = os.readlink(target / "..data")
    await setup(tmp_path, vols, store)
    assert os.readlink(target / "..data") == first  # unchanged content: nothing rewritten
    store[("configmaps", "cm")] = {"data": {"a.conf": "uno"}}
    await setup(tmp_path, vols, store)
    assert (target / "sub/a").read_text() == "uno" and os.readlink(target / "..data") != first
    assert not (target / first).exists()  # the old generation is gone


async def test_secret_is_decoded_and_missing_sources_fail_unless_optional(tmp_path: Path) -> None:
    store = {("secrets", "s"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}}}
    target = (await setup(tmp_path, [{"name": "s", "secret": {"secretName": "s"}}], store))["s"]
    assert (target / "pw").read_bytes() == b"hunter2"
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        await setup(tmp_path, [{"name": "x", "secret": {"secretName": "nope"}}])
    target = (await setup(tmp_path, [{"name": "y", "configMap": {"name": "nope", "optional": True}}]))["y"]
    assert [p.name for p in target.iterdir() if not p.name.startswith("..")] == []


async def test_downward_api_files(tmp_path: Path) -> None:
    vols = [{"name": "d", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]
    target = (await setup(tmp_path, vols))["d"]
    assert (target / "labels").read_text() == 'a="1"\nb="2"'
    assert (target / "name").read_text() == "p"


def test_only_a_volume_showing_the_pod_ip_waits_for_the_sandbox() -> None:
    def pod(volumes: list) -> dict:
        return {**POD, "spec": {**POD["spec"], "volumes": volumes}}
    ip = {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}
    name = {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}
    assert not volumes.shows_pod_ip(pod([{"name": "e", "emptyDir": {}}, {"name": "d", "downwardAPI": {"items": [name]}},
                                         {"name": "t", "projected": {"sources": [{"serviceAccountToken": {}}]}}]))
    assert volumes.shows_pod_ip(pod([{"name": "d", "downwardAPI": {"items": [name, ip]}}]))
    ips = {**ip, "fieldRef": {"fieldPath": "status.podIPs"}}
    assert volumes.shows_pod_ip(pod([{"name": "p", "projected": {"sources": [
        {"configMap": {"name": "cm"}}, {"downwardAPI": {"items": [ips]}}]}}]))


async def test_host_path_types(tmp_path: Path) -> None:
    made = tmp_path / "made/here"
    await setup(tmp_path, [{"name": "h", "hostPath": {"path": str(made), "type": "DirectoryOrCreate"}}])
    assert made.is_dir()
    with pytest.raises(ConfigError, match="does not exist"):
        await setup(tmp_path, [{"name": "h", "hostPath": {"path": str(tmp_path / "no"), "type": "Directory"}}])
    with pytest.raises(ConfigError, match="is not a File"):
        await setup(tmp_path, [{"name": "h", "hostPath": {"path": str(made), "type": "File"}}])


async def test_sub_path_mounts_and_unknown_volume(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (bind mounts)")
    vm = VolumeManager(tmp_path)
    store = {("configmaps", "cm"): {"data": {"k": "v"}}}
    pod = {**POD, "spec": {**POD["spec"], "volumes": [{"name": "e", "emptyDir": {}},
                                                      {"name": "cm", "configMap": {"name": "cm"}}]}}
    vols = await vm.setup(pod, objects(store), objects(store), "10.0.0.2", "192.0.2.1", {})
    try:
        mounts = vm.container_mounts(pod, {"name": "c", "volumeMounts": [
            {"name": "e", "mountPath": "/x", "subPath": "a/b", "readOnly": True},
            {"name": "cm", "mountPath": "/k", "subPath": "k"}, {"name": "cm", "mountPath": "/all"}]}, vols)
        assert (vols["e"] / "a/b").is_dir()
        bound = Path(mounts[0].host_path)
        assert bound == tmp_path / "pods/uid-1/volume-subpaths/e/c/0"
        assert f" {bound} " in Path("/proc/self/mountinfo").read_text()
        (vols["e"] / "a/b/seen").write_text("1")
        assert (bound / "seen").read_text() == "1" and mounts[0].read_only
        # a configMap key through its in-volume links (k -> ..data/k -> ..<ts>/k); configMap is always read-only
        assert Path(mounts[1].host_path).read_text() == "v" and mounts[1].read_only and mounts[2].read_only
        with pytest.raises(ConfigError, match="must be a relative path"):
            vm.container_mounts(pod, {"name": "c", "volumeMounts": [
                {"name": "e", "mountPath": "/x", "subPath": "../../etc"}]}, vols)
        with pytest.raises(ConfigError, match="no volume of that name"):
            vm.container_mounts(pod, {"name": "c", "volumeMounts": [{"name": "zz", "mountPath": "/x"}]}, vols)
    finally:
        vm.teardown("uid-1")
    assert not (tmp_path / "pods/uid-1").exists()


def test_open_subpath_never_leaves_the_volume(tmp_path: Path) -> None:
    vol, outside = tmp_path / "vol", tmp_path / "outside"
    vol.mkdir()
    outside.mkdir()
    (vol / "real").mkdir()
    os.symlink("real", vol / "inside")           # stays inside: followed
    os.symlink(str(outside), vol / "abs")        # absolute: out
    os.symlink("../outside", vol / "up")         # relative, out
    os.symlink("real/../../outside", vol / "deep")
    fd = open_subpath(vol, "inside/new/dir")
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(vol / "real/new/dir"))
    finally:
        os.close(fd)
    for sub in ("abs", "up", "deep", "abs/x", "up/made"):
        with pytest.raises(OSError) as e:
            os.close(open_subpath(vol, sub))
        assert e.value.errno in (errno.EXDEV, errno.ELOOP), sub
    assert list(outside.iterdir()) == []  # nothing created out there
    with pytest.raises(ConfigError):
        open_subpath(vol, "../outside")


async def test_atomic_writer_never_follows_a_planted_data_link(tmp_path: Path) -> None:
    """CVE-2017-1002102: `..data` (or any top-level name) replaced by a link to a host directory."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "marker").write_text("keep")
    store = {("configmaps", "cm"): {"data": {"a": "1"}}}
    vols = [{"name": "v", "configMap": {"name": "cm"}}]
    target = (await setup(tmp_path, vols, store))["v"]
    os.unlink(target / "..data")
    os.symlink(str(host), target / "..data")
    os.unlink(target / "a")
    os.symlink(str(host), target / "a")
    os.symlink(str(host), target / "..evil")
    store[("configmaps", "cm")] = {"data": {"a": "2"}}
    (await setup(tmp_path, vols, store))
    assert (host / "marker").read_text() == "keep"
    assert (target / "a").read_text() == "2" and not (target / "..evil").exists()


def test_open_subpath_without_openat2_refuses_every_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safeopen, "_state", {"openat2": False})
    vol = tmp_path / "vol"
    (vol / "real").mkdir(parents=True)
    os.symlink("real", vol / "inside")
    os.symlink("/", vol / "abs")
    fd = open_subpath(vol, "real/made")
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(vol / "real/made"))
    finally:
        os.close(fd)
    for sub in ("inside", "abs/tmp", "inside/x"):
        with pytest.raises(OSError) as e:
            os.close(open_subpath(vol, sub))
        assert e.value.errno == errno.ELOOP, sub
    assert not (vol / "real/x").exists()
