"""Build context handling: .dockerignore, and copying files into an image rootfs safely.

The builder writes into a mounted image rootfs from the host, so every path inside
the rootfs is resolved the way the kernel would inside a chroot (symlinks followed,
absolute ones relative to the rootfs, `..` clamped at its root). An image with
`/app -> /etc` can therefore never make `COPY x /app/` write to the host's /etc.
"""
from __future__ import annotations

import collections
import glob
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from images.errors import BuildError

_MAX_SYMLINKS = 40


def resolve_in_root(root: Path, path: str, follow_last: bool = True) -> Path:
    parts = collections.deque(p for p in path.split("/") if p not in ("", "."))
    cur: list[str] = []
    links = 0
    while parts:
        p = parts.popleft()
        if p == "..":
            if cur:
                cur.pop()
            continue
        candidate = root.joinpath(*cur, p)
        if (follow_last or parts) and candidate.is_symlink():
            links += 1
            if links > _MAX_SYMLINKS:
                raise BuildError(f"too many levels of symbolic links resolving {path!r} in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                cur = []
            parts.extendleft(reversed([x for x in target.split("/") if x not in ("", ".")]))
            continue
        cur.append(p)
    return root.joinpath(*cur)


def makedirs_in_root(root: Path, path: str, uid: int = 0, gid: int = 0) -> Path:
    """mkdir -p inside the rootfs; directories created get uid:gid and 0755."""
    cur = ""
    result = root
    for part in [p for p in path.split("/") if p not in ("", ".")]:
        cur = f"{cur}/{part}"
        result = resolve_in_root(root, cur)
        if not os.path.lexists(result):
            # A dangling symlink resolves to a path whose own parents may be missing too.
            # Resolution is complete, so every existing prefix is a real directory.
            for i in range(1, len(result.relative_to(root).parts) + 1):
                prefix = root.joinpath(*result.relative_to(root).parts[:i])
                if not os.path.lexists(prefix):
                    os.mkdir(prefix, 0o755)
                    os.chown(prefix, uid, gid)
        elif not result.is_dir():
            raise BuildError(f"{cur} exists in the image and is not a directory")
    return result


class IgnoreRules:
    """.dockerignore: Go filepath.Match patterns plus `**`, `!` exceptions, last match wins,
    and a pattern matching a directory excludes everything below it."""

    def __init__(self, text: str = ""):
        self.rules: list[tuple[re.Pattern[str], bool]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
            if pattern in ("", "."):
                continue
            self.rules.append((re.compile(_translate(pattern)), negate))

    @classmethod
    def for_context(cls, context: Path) -> "IgnoreRules":
        f = context / ".dockerignore"
        return cls(f.read_text() if f.is_file() else "")

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        result = False
        for regex, negate in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                result = not negate
        return result


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith(("!", "^")) else body).replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


@dataclass
class Owner:
    """Who copied files belong to: a fixed uid/gid (--chown, or root for context files), or keep the source's;
    and their mode: the source's, or a fixed one (--chmod)."""
    uid: int | None = 0
    gid: int | None = 0
    mode: int | None = None


def context_sources(context: Path, src: str, ignore: IgnoreRules, lineno: int) -> list[Path]:
    """Expand one COPY/ADD source (may be a glob) to paths in the context, honouring .dockerignore."""
    clean = os.path.normpath(src.lstrip("/")) if src.strip("/") else "."
    if clean == ".." or clean.startswith("../"):
        raise BuildError(f"Dockerfile line {lineno}: source {src!r} is outside the build context")
    if glob.has_magic(clean):
        matches = sorted(m for m in glob.glob(clean, root_dir=context) if not ignore.excluded(m))
    else:
        matches = [clean] if (clean == "." or not ignore.excluded(clean)) and os.path.lexists(context / clean) else []
    if not matches:
        raise BuildError(f"Dockerfile line {lineno}: source {src!r} not found in the build context "
                         "(or excluded by .dockerignore)")
    real_context = os.path.realpath(context)
    for m in matches:
        # `link/file` with link -> /etc must not smuggle host files into the image.
        parent = os.path.realpath(context / os.path.dirname(m))
        if parent != real_context and not parent.startswith(real_context + os.sep):
            raise BuildError(f"Dockerfile line {lineno}: source {m!r} is outside the build context "
                             "(through a symlink)")
    return [context / m for m in matches]


def copy_entry(src: Path, root: Path, dest: str, owner: Owner, ignore: IgnoreRules | None = None,
               src_root: Path | None = None) -> None:
    """Copy one file, symlink or directory tree `src` to the in-image path `dest`.

    `ignore` filters paths relative to `src_root` (the build context); directories are merged.
    """
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        target = resolve_in_root(root, dest)
        if not target.exists():
            os.mkdir(target, 0o755)
        elif not target.is_dir():
            raise BuildError(f"cannot copy directory {src.name!r} onto the file {dest} in the image")
        _meta(target, st, owner)
        for child in sorted(os.listdir(src)):
            child_src = src / child
            if ignore and src_root is not None and ignore.excluded(child_src.relative_to(src_root).as_posix()):
                continue
            copy_entry(child_src, root, f"{dest.rstrip('/')}/{child}", owner, ignore, src_root)
        return
    name = os.path.basename(dest.rstrip("/"))
    if name in ("", ".", ".."):
        raise BuildError(f"cannot copy {src.name!r} to {dest!r}: not a file name")
    parent = resolve_in_root(root, os.path.dirname(dest.rstrip("/")) or "/")
    target = parent / name
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.unlink(target)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), target)
    elif stat.S_ISREG(st.st_mode):
        with open(src, "rb") as fin, open(target, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    else:
        raise BuildError(f"cannot copy {src.name!r}: only files, directories and symlinks can be copied")
    _meta(target, st, owner)


def _meta(path: Path, st: os.stat_result, owner: Owner) -> None:
    uid = st.st_uid if owner.uid is None else owner.uid
    gid = st.st_gid if owner.gid is None else owner.gid
    os.lchown(path, uid, gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode) if owner.mode is None else owner.mode)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
