"""Pod volumes on the host: each under <root>/pods/<uid>/volumes/<name>, except hostPath and PV directories.

emptyDir (disk, or `medium: Memory` as a tmpfs with sizeLimit), hostPath (with its type checks), configMap,
secret, downwardAPI and projected (files written with items/defaultMode), persistentVolumeClaim (the bound
PV's hostPath/local directory, created on demand; else <root>/local-path/<pv name>). The runtime bind-mounts
the resulting host paths; subPath is resolved here. Teardown unmounts tmpfs and removes the pod directory;
PV and hostPath data stay.
"""
from __future__ import annotations

import base64
import ctypes
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

from pklib.quantity import QuantityError, to_bytes

from kubelet.env import ConfigError, field_ref, resource_field_ref
from kubelet.runtime.interface import Mount

Getter = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (plural, name) -> object in the pod namespace
ClusterGetter = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (plural, name) -> cluster-scoped object

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


def pod_dir(root: Path, uid: str) -> Path:
    return root / "pods" / uid


def _mount_tmpfs(path: Path, size: int | None) -> None:
    if os.path.ismount(path):
        return
    opts = f"mode=0777,size={size}" if size else "mode=0777"
    if _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise ConfigError(f"mounting tmpfs at {path}: {os.strerror(err)}")


def _unmount(path: Path) -> None:
    if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


def _write_files(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Make the volume show exactly `files` (relative path -> (content, mode)), switched atomically.

    Kubernetes' AtomicWriter layout: the files live in a fresh hidden directory, `..data` is a symlink to it
    and each top-level name a symlink through `..data`; an update renames a new `..data` link over the old
    one, so a reader sees either the old set of files or the new one, never a mix. Unchanged content is left
    alone (no churn on every resync).
    """
    for rel in files:
        if rel.startswith("/") or ".." in Path(rel).parts or not rel:
            raise ConfigError(f"invalid volume item path {rel!r}")
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    if data_link.is_symlink() and _same_files(data_link, files):
        return
    new_dir = Path(tempfile.mkdtemp(prefix="..", dir=target))
    for rel, (content, mode) in files.items():
        path = new_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.chmod(path, mode)
    os.chmod(new_dir, 0o755)
    old_dir = target / os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link = target / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(new_dir.name, tmp_link)
    os.replace(tmp_link, data_link)
    top = {Path(rel).parts[0] for rel in files}
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in top:
            entry.unlink()  # a key that went away
    for name in top:
        link = target / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)
    if old_dir is not None and old_dir != new_dir:
        shutil.rmtree(old_dir, ignore_errors=True)


def _same_files(data: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    present = {str(p.relative_to(data.resolve())) for p in data.resolve().rglob("*") if p.is_file()}
    if present != set(files):
        return False
    for rel, (content, mode) in files.items():
        path = data / rel
        if path.read_bytes() != content or stat.S_IMODE(path.stat().st_mode) != mode:
            return False
    return True


def _key_files(data: dict[str, bytes], items: list[dict[str, Any]] | None, default_mode: int,
               what: str, optional: bool) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise ConfigError(f"configmap/secret {what}: no key {item['key']!r}")
        out[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
    return out


def _data(obj: dict[str, Any], plural: str) -> dict[str, bytes]:
    if plural == "secrets":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


async def _object_files(get: Getter, plural: str, src: dict[str, Any], default_mode: int
                        ) -> dict[str, tuple[bytes, int]]:
    name = src.get("name") or src.get("secretName") or ""
    optional = bool(src.get("optional"))
    obj = await get(plural, name)
    if obj is None:
        if optional:
            return {}
        raise ConfigError(f'{"configmap" if plural == "configmaps" else "secret"} "{name}" not found')
    return _key_files(_data(obj, plural), src.get("items"), src.get("defaultMode", default_mode), name, optional)


def _downward_files(pod: dict[str, Any], items: list[dict[str, Any]], default_mode: int, pod_ip: str,
                    host_ip: str, allocatable: dict[str, str]) -> dict[str, tuple[bytes, int]]:
    out = {}
    for item in items:
        if "fieldRef" in item:
            path = item["fieldRef"].get("fieldPath", "")
            if path in ("metadata.labels", "metadata.annotations"):
                values = pod["metadata"].get(path.split(".")[1]) or {}
                text = "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
            else:
                text = field_ref(pod, path, pod_ip, host_ip)
        else:
            ref = item.get("resourceFieldRef") or {}
            text = resource_field_ref(pod, ref.get("containerName", ""), ref, allocatable)
        out[item["path"]] = (text.encode(), item.get("mode", default_mode))
    return out


def _check_host_path(path: Path, type_: str) -> None:
    """HostPathType semantics: create when asked, otherwise the path must be of the given kind."""
    if type_ == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
        return
    if type_ == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        return
    if not type_:
        return
    checks = {"Directory": stat.S_ISDIR, "File": stat.S_ISREG, "Socket": stat.S_ISSOCK,
              "CharDevice": stat.S_ISCHR, "BlockDevice": stat.S_ISBLK}
    if type_ not in checks:
        raise ConfigError(f"hostPath type {type_!r} is not supported")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"hostPath type check failed: {path} does not exist") from None
    if not checks[type_](mode):
        raise ConfigError(f"hostPath type check failed: {path} is not a {type_}")


class VolumeManager:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def setup(self, pod: dict[str, Any], get: Getter, get_cluster: ClusterGetter, pod_ip: str, host_ip: str,
                    allocatable: dict[str, str], refresh_only: bool = False) -> dict[str, Path]:
        """Make every volume of the pod exist on the host; returns volume name -> host path. Idempotent.
        `refresh_only`: just rewrite the volumes whose content comes from the API (configMap, secret,
        downwardAPI, projected), which is how their updates reach running pods."""
        base = pod_dir(self.root, pod["metadata"]["uid"]) / "volumes"
        out: dict[str, Path] = {}
        for vol in pod["spec"].get("volumes") or []:
            if refresh_only and not any(k in vol for k in ("configMap", "secret", "downwardAPI", "projected")):
                continue
            name = vol["name"]
            target = base / name
            if "emptyDir" in vol:
                target.mkdir(parents=True, exist_ok=True)
                ed = vol["emptyDir"] or {}
                if ed.get("medium") == "Memory":
                    try:
                        size = to_bytes(ed["sizeLimit"]) if ed.get("sizeLimit") else None
                    except QuantityError as e:
                        raise ConfigError(f"volume {name}: sizeLimit: {e}") from None
                    _mount_tmpfs(target, size)
                else:
                    os.chmod(target, 0o777)
            elif "hostPath" in vol:
                target = Path(vol["hostPath"]["path"])
                _check_host_path(target, vol["hostPath"].get("type") or "")
            elif "configMap" in vol:
                _write_files(target, await _object_files(get, "configmaps", vol["configMap"], 0o644))
            elif "secret" in vol:
                _write_files(target, await _object_files(get, "secrets", vol["secret"], 0o644))
            elif "downwardAPI" in vol:
                dw = vol["downwardAPI"] or {}
                _write_files(target, _downward_files(pod, dw.get("items") or [], dw.get("defaultMode", 0o644),
                                                     pod_ip, host_ip, allocatable))
            elif "projected" in vol:
                pr = vol["projected"] or {}
                mode = pr.get("defaultMode", 0o644)
                files: dict[str, tuple[bytes, int]] = {}
                for src in pr.get("sources") or []:
                    if "configMap" in src:
                        files.update(await _object_files(get, "configmaps", src["configMap"], mode))
                    elif "secret" in src:
                        files.update(await _object_files(get, "secrets", src["secret"], mode))
                    elif "downwardAPI" in src:
                        files.update(_downward_files(pod, src["downwardAPI"].get("items") or [], mode, pod_ip,
                                                     host_ip, allocatable))
                _write_files(target, files)
            elif "persistentVolumeClaim" in vol:
                target = await self._claim_dir(vol["persistentVolumeClaim"].get("claimName", ""), get, get_cluster)
            else:
                raise ConfigError(f"volume {name}: this volume type is not supported")
            out[name] = target
        return out

    async def _claim_dir(self, claim: str, get: Getter, get_cluster: ClusterGetter) -> Path:
        pvc = await get("persistentvolumeclaims", claim)
        if pvc is None:
            raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
            raise ConfigError(f'persistentvolumeclaim "{claim}" is not bound')
        pv = await get_cluster("persistentvolumes", pv_name)
        if pv is None:
            raise ConfigError(f'persistentvolume "{pv_name}" not found')
        spec = pv.get("spec") or {}
        path = (spec.get("hostPath") or {}).get("path") or (spec.get("local") or {}).get("path")
        target = Path(path) if path else self.root / "local-path" / pv_name
        target.mkdir(parents=True, exist_ok=True, mode=0o777)
        return target

    def teardown(self, uid: str) -> None:
        """Unmount the pod's tmpfs volumes and delete its directory (never touches hostPath/PV data)."""
        pdir = pod_dir(self.root, uid)
        vols = pdir / "volumes"
        if vols.is_dir():
            for v in vols.iterdir():
                _unmount(v)
        shutil.rmtree(pdir, ignore_errors=True)

    def pod_uids(self) -> list[str]:
        pods = self.root / "pods"
        return [p.name for p in pods.iterdir()] if pods.is_dir() else []


def container_mounts(container: dict[str, Any], volumes: dict[str, Path]) -> list[Mount]:
    mounts = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volumes:
            raise ConfigError(f"volumeMount {vm['name']!r}: no volume of that name")
        host = volumes[vm["name"]]
        sub = vm.get("subPath") or ""
        if sub:
            if sub.startswith("/") or ".." in Path(sub).parts:
                raise ConfigError(f"volumeMount {vm['name']!r}: subPath {sub!r} must be a relative path inside")
            host = host / sub
            if not host.exists():
                host.mkdir(parents=True, mode=0o777)  # Kubernetes creates a missing subPath as a directory
        mounts.append(Mount(container_path=vm["mountPath"], host_path=str(host), read_only=bool(vm.get("readOnly"))))
    return mounts
