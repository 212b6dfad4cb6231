"""Pod volumes on the host: each under <root>/pods/<uid>/volumes/<name>, except hostPath and PV directories.

emptyDir (disk, or `medium: Memory` as a tmpfs with sizeLimit), hostPath (with its type checks), configMap,
secret, downwardAPI and projected (files written with items/defaultMode), persistentVolumeClaim (the bound
PV's hostPath/local directory, created on demand; else <root>/local-path/<pv name>). The runtime bind-mounts
the resulting host paths, API-content volumes always read-only. Nothing a container can write is followed:
the configMap/secret writer works by name under its opened directory, and a subPath is opened beneath its
volume (openat2 RESOLVE_BENEATH) and bind-mounted under <pod>/volume-subpaths. Teardown unmounts everything
under the pod directory (tmpfs, subPath binds) and removes it; PV and hostPath data stay.
"""
from __future__ import annotations

import base64
import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from pklib.quantity import QuantityError, to_bytes
from pklib.safeopen import BENEATH, open_inside

from kubelet.env import ConfigError, field_ref, resource_field_ref
from kubelet.runtime.interface import Mount

Getter = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (plural, name) -> object in the pod namespace
ClusterGetter = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (plural, name) -> cluster-scoped object
TokenGetter = Callable[[str, int], Awaitable[str]]  # (audience, expirationSeconds) -> the pod's bound token

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
API_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")  # content written by the kubelet


def shows_pod_ip(pod: dict[str, Any]) -> bool:
    """A downwardAPI volume (or projection) of the pod writes its IP: it can be filled only once the sandbox is made."""
    for vol in pod["spec"].get("volumes") or []:
        sources = [vol] + list((vol.get("projected") or {}).get("sources") or [])
        for src in sources:
            for item in (src.get("downwardAPI") or {}).get("items") or []:
                if str((item.get("fieldRef") or {}).get("fieldPath", "")).startswith("status.podIP"):
                    return True
    return False


def pod_dir(root: Path, uid: str) -> Path:
    return root / "pods" / uid


def _mount_tmpfs(path: Path, size: int | None) -> None:
    if os.path.ismount(path):
        return
    opts = f"mode=0777,size={size}" if size else "mode=0777"
    if _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise ConfigError(f"mounting tmpfs at {path}: {os.strerror(err)}")


# The atomic writer's reserved names (Kubernetes' AtomicWriter): every name starting with ".." belongs to it.
DATA_LINK = "..data"
DATA_TMP = "..data_tmp"
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _is_generation(name: str) -> bool:
    """A name the writer may have given a data directory: in its own directory, `..`-prefixed, not a reserved link."""
    return name.startswith("..") and "/" not in name and name not in ("..", DATA_LINK, DATA_TMP)


def _remove_at(dir_fd: int, name: str) -> None:
    """Remove the child `name` of the directory `dir_fd` without following a link: a link or a file is unlinked, a
    directory removed by the fd-based rmtree (which itself refuses links and re-checks what it opened)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _readlink_at(dir_fd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except (FileNotFoundError, OSError):  # missing, or not a link (EINVAL)
        return None


def _write_files(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Make the volume show exactly `files` (relative path -> (content, mode)), switched atomically.

    Kubernetes' AtomicWriter layout: the files live in a fresh timestamped `..` directory, `..data` is a symlink
    to it and each top-level name a symlink through `..data`; an update renames a new `..data` link over the old
    one, so a reader sees either the old set of files or the new one, never a mix. Unchanged content is left
    alone (no churn on every resync).

    The volume is mounted read-only into containers, and still nothing here trusts its content: every operation
    is relative to the opened directory, by name, never following a link (CVE-2017-1002102: a container that
    pointed `..data` at a host directory had it deleted). `..data` is read as a name only, and only `..`-named
    children of this directory are ever removed.
    """
    for rel in files:
        parts = Path(rel).parts
        if not rel or rel.startswith("/") or ".." in parts or parts[0].startswith(".."):
            raise ConfigError(f"invalid volume item path {rel!r}")
    target.mkdir(parents=True, exist_ok=True)
    dfd = os.open(target, _O_DIR)
    try:
        current = _readlink_at(dfd, DATA_LINK)
        if current is not None and not _is_generation(current):
            current = None  # a link we did not make: replaced below, never followed
        if current is not None and _read_tree_at(dfd, current) == files:
            return
        new = f"..{time.strftime('%Y_%m_%d_%H_%M_%S', time.gmtime())}.{secrets.token_hex(6)}"
        os.mkdir(new, 0o700, dir_fd=dfd)
        _fill_dir(dfd, new, files)
        _remove_at(dfd, DATA_TMP)
        os.symlink(new, DATA_TMP, dir_fd=dfd)
        if _readlink_at(dfd, DATA_LINK) is None:
            _remove_at(dfd, DATA_LINK)  # not a link (a rename cannot replace a directory)
        os.rename(DATA_TMP, DATA_LINK, src_dir_fd=dfd, dst_dir_fd=dfd)
        top = {Path(rel).parts[0] for rel in files}
        for name in os.listdir(dfd):
            if name.startswith(".."):
                if _is_generation(name) and name != new:
                    _remove_at(dfd, name)  # the previous generation, or one left by an interrupted update
            elif name not in top:
                _remove_at(dfd, name)  # a key that went away
        for name in top:
            want = f"{DATA_LINK}/{name}"
            if _readlink_at(dfd, name) != want:
                _remove_at(dfd, name)
                os.symlink(want, name, dir_fd=dfd)
    finally:
        os.close(dfd)


def _fill_dir(parent_fd: int, name: str, files: dict[str, tuple[bytes, int]]) -> None:
    """Write `files` into the fresh directory `name` (made by the caller, not yet visible through `..data`)."""
    root = os.open(name, _O_DIR, dir_fd=parent_fd)
    try:
        for rel, (content, mode) in files.items():
            *dirs, base = Path(rel).parts
            fd = os.dup(root)
            try:
                for d in dirs:
                    try:
                        os.mkdir(d, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    sub = os.open(d, _O_DIR, dir_fd=fd)
                    os.close(fd)
                    fd = sub
                f = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                            dir_fd=fd)
                try:
                    _write_all(f, content)
                    os.fchmod(f, mode)
                finally:
                    os.close(f)
            finally:
                os.close(fd)
        os.fchmod(root, 0o755)
    finally:
        os.close(root)


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]


def _read_tree_at(parent_fd: int, name: str) -> dict[str, tuple[bytes, int]] | None:
    """The regular files under the directory `name` as {relative path: (content, mode)}; None when it is not
    a directory or holds anything else (a link, a fifo...). Nothing is followed."""
    try:
        fd = os.open(name, _O_DIR, dir_fd=parent_fd)
    except OSError:
        return None
    out: dict[str, tuple[bytes, int]] = {}
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                sub = _read_tree_at(fd, entry.name)
                if sub is None:
                    return None
                out.update({f"{entry.name}/{rel}": v for rel, v in sub.items()})
            elif entry.is_file(follow_symlinks=False):
                f = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
                with os.fdopen(f, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        return None
                    out[entry.name] = (fh.read(), stat.S_IMODE(st.st_mode))
            else:
                return None
    finally:
        os.close(fd)
    return out


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


async def _token_file(src: dict[str, Any], mode: int, token: TokenGetter | None) -> dict[str, tuple[bytes, int]]:
    path = src.get("path") or "token"
    if token is None:
        raise ConfigError("serviceAccountToken: this kubelet cannot request tokens")
    value = await token(str(src.get("audience") or ""), int(src.get("expirationSeconds") or 3600))
    return {path: (value.encode(), mode)}


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
                    allocatable: dict[str, str], refresh_only: bool = False,
                    token: TokenGetter | None = None) -> dict[str, Path]:
        """Make every volume of the pod exist on the host; returns volume name -> host path. Idempotent.
        `refresh_only`: just rewrite the volumes whose content comes from the API (configMap, secret,
        downwardAPI, projected), which is how their updates reach running pods. `token`: fills projected
        serviceAccountToken sources (the kubelet's token manager)."""
        base = pod_dir(self.root, pod["metadata"]["uid"]) / "volumes"
        out: dict[str, Path] = {}
        for vol in pod["spec"].get("volumes") or []:
            if refresh_only and not any(k in vol for k in API_VOLUMES):
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
                    elif "serviceAccountToken" in src:
                        files.update(await _token_file(src["serviceAccountToken"] or {}, mode, token))
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
        """Unmount everything mounted under the pod's directory (tmpfs volumes, subPath binds), then delete it
        (never touches hostPath/PV data: nothing is removed while a mount is left under it)."""
        pdir = pod_dir(self.root, uid)
        for mnt in sorted(_mounts_under(pdir), key=len, reverse=True):
            _unmount_all(Path(mnt))
        left = _mounts_under(pdir)
        if left:
            raise OSError(errno.EBUSY, f"pod directory {pdir} still has mounts: {', '.join(left)}")
        shutil.rmtree(pdir, ignore_errors=True)

    def pod_uids(self) -> list[str]:
        pods = self.root / "pods"
        return [p.name for p in pods.iterdir()] if pods.is_dir() else []

    def container_mounts(self, pod: dict[str, Any], container: dict[str, Any], volumes: dict[str, Path]
                         ) -> list[Mount]:
        """The container's volume mounts as host paths. API-content volumes (configMap, secret, downwardAPI,
        projected) are always read-only, whatever the volumeMount says (as in Kubernetes). A subPath is opened
        inside its volume without following links out of it and bind-mounted to a kubelet-owned path
        (<pod>/volume-subpaths/<volume>/<container>/<index>, removed at teardown), which is what runc mounts: a
        link swapped in after the check cannot redirect it."""
        uid = pod["metadata"]["uid"]
        read_only_volumes = {vol["name"] for vol in pod["spec"].get("volumes") or []
                             if any(k in vol for k in API_VOLUMES)}
        mounts = []
        for index, vm in enumerate(container.get("volumeMounts") or []):
            name = vm["name"]
            if name not in volumes:
                raise ConfigError(f"volumeMount {name!r}: no volume of that name")
            host = volumes[name]
            sub = vm.get("subPath") or ""
            if sub:
                where = f'subPath "{sub}" of volumeMount "{name}" of container "{container["name"]}"'
                target = pod_dir(self.root, uid) / "volume-subpaths" / name / container["name"] / str(index)
                host = _bind_subpath(host, sub, target, where)
            mounts.append(Mount(container_path=vm["mountPath"], host_path=str(host),
                                read_only=bool(vm.get("readOnly")) or name in read_only_volumes))
        return mounts


# --- subPath: resolved beneath the volume, then bind-mounted -------------------------------------------------

MS_BIND = 0x1000
_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def _open_beneath(root_fd: int, parts: tuple[str, ...]) -> int:
    return open_inside(root_fd, "/".join(parts) or ".", os.O_PATH, BENEATH)


def open_subpath(volume: Path, sub: str) -> int:
    """An O_PATH fd of volume/sub that is certainly inside the volume, missing directories created (as
    Kubernetes does). Each prefix is opened beneath the volume and a missing component made with mkdirat in
    the directory just opened, so a link planted anywhere (even during the walk) cannot lead out."""
    parts = Path(sub).parts
    if not sub or sub.startswith("/") or ".." in parts:
        raise ConfigError("must be a relative path inside the volume, without '..'")
    root = os.open(volume, _O_PATH_DIR)
    try:
        fd = os.dup(root)
        try:
            for i in range(len(parts)):
                try:
                    nxt = _open_beneath(root, parts[:i + 1])
                except FileNotFoundError:
                    try:
                        os.mkdir(parts[i], 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass  # a dangling link or a racing mkdir: opened (and checked) again below
                    nxt = _open_beneath(root, parts[:i + 1])
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise
    finally:
        os.close(root)


def _bind_subpath(volume: Path, sub: str, target: Path, where: str) -> Path:
    """Bind-mount volume/sub (opened safely) on `target`; returns target. ConfigError when it leads outside."""
    try:
        fd = open_subpath(volume, sub)
    except ConfigError as e:
        raise ConfigError(f"failed to prepare {where}: {e}") from None
    except OSError as e:
        reason = ("it leads outside the volume through a symbolic link" if e.errno in (errno.EXDEV, errno.ELOOP)
                  else os.strerror(e.errno or 0))
        raise ConfigError(f"failed to prepare {where}: {reason}") from None
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        _unmount_all(target)  # a restarted container gets a fresh resolution
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and target.is_dir() != is_dir:
            target.rmdir() if target.is_dir() else target.unlink()
        if is_dir:
            target.mkdir(exist_ok=True)
        else:
            target.touch(exist_ok=True)
        source = f"/proc/self/fd/{fd}".encode()
        if _libc.mount(source, os.fsencode(target), None, MS_BIND, None) != 0:
            err = ctypes.get_errno()
            raise ConfigError(f"failed to prepare {where}: bind mount: {os.strerror(err)}")
    finally:
        os.close(fd)
    return target


def _unmount_all(path: Path) -> None:
    """Unmount every mount stacked on `path` (none is fine)."""
    for _ in range(100):
        if _libc.umount2(os.fsencode(path), MNT_DETACH | UMOUNT_NOFOLLOW) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                return
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, from /proc/self/mountinfo."""
    base = os.path.realpath(directory)
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == base or point.startswith(base + "/"):
                out.append(point)
    return out
