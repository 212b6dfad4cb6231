"""`RUN --mount=...`: what BuildKit's Dockerfile frontend offers, minus ssh.

- `type=cache,target=DIR[,id=ID][,sharing=shared|private|locked][,mode=0755][,uid=0][,gid=0][,ro]`: a
  directory kept between builds under the store (`<store>/cache-mounts/`), one per id (the target when no
  id is given); never part of a layer or of the step's cache key.
- `type=bind[,source=PATH][,target=DIR][,from=STAGE|IMAGE][,rw]`: a path of the build context (after
  .dockerignore) or of another stage or image; read-only unless `rw`, and then writes are thrown away.
- `type=secret,id=ID[,target=/run/secrets/ID][,required][,mode=0400][,uid][,gid]`: a secret given to the
  build (`pkctl image build --secret id=ID,src=FILE`), never in a layer or the cache key.
- `type=tmpfs,target=DIR[,size=BYTES]`.

Mount points the step needed that the image did not have are removed afterwards, so they leave no trace
in the layer (BuildKit does the same).
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

from pklib.sysctl import RUN_DIR

from images.context import IgnoreRules, Owner, context_sources, copy_entry, resolve_in_root
from images.dockerfile import Instruction

TYPES = ("bind", "cache", "secret", "tmpfs")
SECRETS_DIR = RUN_DIR / "build-secrets"


@dataclass
class MountSpec:
    type: str
    target: str = ""
    source: str = ""
    from_: str | None = None
    id: str = ""
    readonly: bool | None = None       # None: the type's default
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    sharing: str = "shared"
    required: bool = False
    size: str = ""


def _bool(inst: Instruction, key: str, value: str | None) -> bool:
    if value is None or value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise inst.error(f"--mount: invalid value {value!r} for {key} (expected true or false)")


def _int(inst: Instruction, key: str, value: str | None, base: int = 10) -> int:
    try:
        return int(value or "", base)
    except ValueError:
        raise inst.error(f"--mount: invalid value {value!r} for {key}") from None


def parse(inst: Instruction, text: str, workdir: str) -> MountSpec:
    """One `--mount=` value (comma-separated key=value pairs, CSV quoting as Docker's)."""
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise inst.error(f"--mount: cannot parse {text!r}") from None
    spec = MountSpec(type="bind")
    for f in fields:
        key, eq, value = f.strip().partition("=")
        key = key.lower()
        val = value if eq else None
        if key == "type":
            if value not in TYPES:
                raise inst.error(f"--mount: unsupported type {value!r} (supported: {', '.join(TYPES)})")
            spec.type = value
        elif key in ("target", "dst", "destination"):
            spec.target = value
        elif key in ("source", "src"):
            spec.source = value
        elif key == "from":
            spec.from_ = value
        elif key == "id":
            spec.id = value
        elif key in ("ro", "readonly"):
            spec.readonly = _bool(inst, key, val)
        elif key in ("rw", "readwrite"):
            spec.readonly = not _bool(inst, key, val)
        elif key == "mode":
            spec.mode = _int(inst, key, val, 8)
        elif key in ("uid", "gid"):
            setattr(spec, key, _int(inst, key, val))
        elif key == "sharing":
            if value not in ("shared", "private", "locked"):
                raise inst.error(f"--mount: invalid sharing {value!r} (shared, private or locked)")
            spec.sharing = value
        elif key == "required":
            spec.required = _bool(inst, key, val)
        elif key == "size":
            spec.size = value
        else:
            raise inst.error(f"--mount: unknown option {key!r}")
    if spec.type == "secret":
        spec.id = spec.id or os.path.basename(spec.target)
        if not spec.id:
            raise inst.error("--mount=type=secret needs id=ID")
        spec.target = spec.target or f"/run/secrets/{spec.id}"
    if not spec.target:
        raise inst.error(f"--mount=type={spec.type} needs target=PATH")
    spec.target = os.path.normpath(os.path.join(workdir, spec.target))
    if spec.type == "cache" and spec.from_:
        raise inst.error("--mount=type=cache,from=... is not supported")
    if spec.from_ is not None and spec.type != "bind":
        raise inst.error(f"--mount: from= applies to type=bind only, not {spec.type}")
    return spec


def cache_dir(store_root: Path, spec: MountSpec) -> Path:
    """The persistent directory of a cache mount, created on first use with the mount's owner and mode."""
    key = hashlib.sha256((spec.id or spec.target).encode()).hexdigest()[:32]
    path = store_root / "cache-mounts" / key
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        os.chown(tmp, spec.uid, spec.gid)
        os.chmod(tmp, 0o755 if spec.mode is None else spec.mode)
        try:
            os.rename(tmp, path)
        except OSError:  # another build made it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def bind(source: Path, target: str, readonly: bool) -> dict[str, Any]:
    return {"destination": target, "type": "bind", "source": str(source),
            "options": ["rbind", "ro" if readonly else "rw"]}


def tmpfs(target: str, size: str) -> dict[str, Any]:
    return {"destination": target, "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", *([f"size={size}"] if size else [])]}


def oci_mounts(spec: MountSpec, inst: Instruction, stack: contextlib.ExitStack, bundle: Path, store_root: Path,
           secrets: dict[str, bytes], context: Path, ignore: IgnoreRules,
           source_rootfs: Callable[[str, Instruction], ContextManager[tuple[Path, str]]]) -> list[dict[str, Any]]:
    """The OCI mounts of one --mount (none for a secret not given and not required); what they need stays open
    until `stack` closes. `source_rootfs(ref, inst)` mounts a stage or image."""
    if spec.type == "tmpfs":
        return [tmpfs(spec.target, spec.size)]
    if spec.type == "cache":
        path = cache_dir(store_root, spec)
        if spec.sharing == "locked":
            lock = stack.enter_context(open(path.with_name(path.name + ".lock"), "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        return [bind(path, spec.target, bool(spec.readonly))]
    if spec.type == "secret":
        value = secrets.get(spec.id)
        if value is None:
            if spec.required:
                raise inst.error(f"secret {spec.id!r} is required but was not given (--secret id={spec.id},"
                                 "src=FILE)")
            return []
        # In /run (a tmpfs): a secret never reaches a disk, as in BuildKit.
        secret_dir = SECRETS_DIR / uuid.uuid4().hex
        secret_dir.mkdir(mode=0o700, parents=True)
        stack.callback(shutil.rmtree, secret_dir, True)
        path = secret_dir / "secret"
        path.write_bytes(value)
        os.chown(path, spec.uid, spec.gid)
        os.chmod(path, 0o400 if spec.mode is None else spec.mode)
        return [bind(path, spec.target, readonly=True)]
    readonly = True if spec.readonly is None else spec.readonly
    if spec.from_ is not None:
        src_root, _ = stack.enter_context(source_rootfs(spec.from_, inst))
        source = resolve_in_root(src_root, spec.source or "/")
        if not os.path.lexists(source):
            raise inst.error(f"--mount from={spec.from_}: {spec.source!r} not found")
        return [bind(source, spec.target, readonly)]
    # The context as the build sees it (.dockerignore applied), in a copy: writes never reach the user's files.
    [src] = context_sources(context, spec.source or ".", ignore, inst.lineno)[:1]
    copy_root = bundle / "binds" / uuid.uuid4().hex
    copy_root.mkdir(parents=True)
    copy_entry(src, copy_root, "/src", Owner(None, None, None), ignore, context)
    return [bind(copy_root / "src", spec.target, readonly)]


def first_missing(root: Path, path: str) -> str | None:
    """The shallowest component of `path` the image does not have (what a mount there would create)."""
    cur = ""
    for part in [p for p in path.split("/") if p]:
        cur = f"{cur}/{part}"
        if not os.path.lexists(resolve_in_root(root, cur)):
            return cur
    return None


def remove_stubs(root: Path, target: str, created: str) -> None:
    """Remove the empty mount point `target` and the empty parents down to `created`, which the runtime made."""
    path = target
    while True:
        host = resolve_in_root(root, path, follow_last=False)
        try:
            if host.is_dir() and not host.is_symlink():
                os.rmdir(host)
            elif host.is_file() and os.path.getsize(host) == 0:
                os.unlink(host)
            else:
                return
        except OSError:  # not empty: the step wrote something of its own there
            return
        if path == created or len(path) <= len(created):
            return
        path = os.path.dirname(path)
