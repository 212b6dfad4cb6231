"""`pkctl cp [NAMESPACE/]POD:PATH LOCAL` and `pkctl cp LOCAL [NAMESPACE/]POD:PATH [-c C]`: kubectl's cp, a tar
stream over pods/exec (so the container needs `tar`, as with kubectl; busybox has it).

Into the pod: the local file or directory is packed here and unpacked by `tar -xmf - -C DIR` (into PATH when PATH
is a directory in the container, else as PATH). Out of the pod: `tar cf - -C DIR NAME` packs it there and it is
unpacked here as LOCAL, refusing members that would land outside LOCAL (absolute paths, `..`, links leading out).
"""
from __future__ import annotations

import argparse
import io
import posixpath
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..connect import Connection, run
from ..errors import CommandError
from .exec import run_collecting


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cp", help="copy files and directories to and from containers",
                       description="Copy files and directories to and from containers (through tar in the "
                                   "container): cp POD:PATH LOCAL, or cp LOCAL POD:PATH.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("-c", "--container", default="", help="the container (default: the pod's first)")
    p.add_argument("--no-preserve", action="store_true", help="do not keep the files' owner and mode in the pod")
    p.set_defaults(func=command)


@dataclass
class Remote:
    namespace: str | None
    pod: str
    path: str


def parse_spec(spec: str) -> Remote | None:
    """`[ns/]pod:path` → Remote; a local path → None (kubectl's rule: a colon, and no slash before it but one)."""
    head, colon, path = spec.partition(":")
    if not colon or not head:
        return None
    ns, slash, pod = head.rpartition("/")
    if "/" in ns:
        return None
    return Remote(ns if slash else None, pod, path)


def command(args: argparse.Namespace) -> int:
    src, dest = parse_spec(args.src), parse_spec(args.dest)
    if (src is None) == (dest is None):
        raise CommandError("one of src or dest must be a remote file specification" if src is None else
                           "one of src or dest must be a local file specification")
    remote = src or dest
    assert remote is not None
    if not remote.path:
        raise CommandError("remote path can not be empty")

    async def go(conn: Connection) -> int:
        ns = remote.namespace or conn.namespace
        if src is not None:
            return await copy_from_pod(conn, ns, src, Path(args.dest), args.container)
        return await copy_to_pod(conn, ns, Path(args.src), remote, args.container, args.no_preserve)
    return run(args, go)


async def copy_to_pod(conn: Connection, ns: str, local: Path, remote: Remote, container: str,
                      no_preserve: bool) -> int:
    if not local.exists():
        raise CommandError(f"{local} doesn't exist in local filesystem")
    target = remote.path.rstrip("/") or "/"
    # Into an existing directory: under its own name, as cp does.
    is_dir, _, _ = await run_collecting(conn, ns, remote.pod, ["test", "-d", target], container)
    if is_dir == 0:
        target = posixpath.join(target, local.name)
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        tar.add(str(local), arcname=posixpath.basename(target) or ".")
    untar = ["tar", "-xmf", "-"] if not no_preserve else ["tar", "--no-same-permissions", "--no-same-owner",
                                                           "-xmf", "-"]
    code, out, err = await run_collecting(conn, ns, remote.pod, [*untar, "-C", posixpath.dirname(target) or "/"],
                                          container, stdin=packed.getvalue())
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return 0 if code == 0 else 1


async def copy_from_pod(conn: Connection, ns: str, remote: Remote, local: Path, container: str) -> int:
    path = remote.path.rstrip("/") or "/"
    name = posixpath.basename(path)
    if not name or name in (".", ".."):
        raise CommandError(f"cannot copy {remote.path!r}: name a file or directory")
    code, out, err = await run_collecting(conn, ns, remote.pod, ["tar", "cf", "-", "-C",
                                                                 posixpath.dirname(path) or "/", name], container)
    if code != 0:
        sys.stderr.buffer.write(err)
        raise CommandError(f"cannot copy {remote.pod}:{remote.path}: tar in the container exited {code}")
    if local.is_dir():
        local = local / name
    with tarfile.open(fileobj=io.BytesIO(out), mode="r") as tar:
        members = []
        for member in tar.getmembers():
            rest = member.name[len(name):] if member.name == name or member.name.startswith(name + "/") else None
            if rest is None:
                continue
            member.name = local.name + rest
            members.append(member)
        try:
            # "data": no absolute paths, no `..`, no links pointing out, no device files (Python's safe filter).
            tar.extractall(local.parent, members=members, filter="data")
        except (tarfile.FilterError, OSError) as e:
            raise CommandError(f"cannot unpack {remote.pod}:{remote.path} into {local}: {e}") from None
    return 0
