"""Building images from a Dockerfile.

Every filesystem-changing step (RUN, COPY, ADD, WORKDIR) runs over an overlay of
the layers so far with a fresh upper dir; the upper dir becomes the step's layer
(diff.py). Each step has a cache key chained from its parent's key, the
instruction text (after variable expansion) and a hash of its inputs (context
files, build args), so an unchanged rebuild reuses every layer — and because the
creation time is cached too, it yields the very same image digest.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import orjson

from images import buildmounts, buildnet, buildrun, dockerfile, reference
from images.buildprogress import Progress as Steps, Step
from images.context import (IgnoreRules, Owner, context_sources, copy_entry, makedirs_in_root,
                                    resolve_in_root)
from images.diff import is_empty, write_layer
from images.dockerfile import Instruction
from images.errors import BuildError, ImageError
from images.image import Image, Layer, host_arch, now_rfc3339
from images.rootfs import mount_overlay, unmount
from images.unpack import decompressed, extract
from images.urlfetch import download

if TYPE_CHECKING:
    from images.store import ImageStore

Progress = Callable[[str], None]
FS_STEPS = ("FROM", "RUN", "COPY", "ADD", "WORKDIR")   # the instructions progress shows as steps (as BuildKit)
LOCAL_REGISTRY = "pkube.local"                          # images built here, never pulled
NETWORKS = ("default", "none")


@dataclass
class Stage:
    name: str | None
    layers: list[Layer]
    config: dict[str, Any]           # the full OCI config document (runtime settings under "config")
    key: str                         # cache chain key after the last instruction
    created: str                     # creation time of the newest layer (or the base)
    args: dict[str, str] = field(default_factory=dict)
    cmd_from_base: bool = True

    @property
    def runtime(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})

    def env(self) -> dict[str, str]:
        out = {}
        for item in self.runtime.get("Env") or []:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def vars(self) -> dict[str, str]:
        """What ${VAR} expands to: build args, overridden by ENV."""
        return {**self.args, **self.env()}


def _h(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


class Builder:
    def __init__(self, store: "ImageStore", context: Path, dockerfile_text: str, build_args: dict[str, str],
                 progress: Progress = print, no_cache: bool = False, secrets: dict[str, bytes] | None = None,
                 network: str = "default", pull: bool = False, labels: dict[str, str] | None = None):
        self.store = store
        self.context = context.resolve()
        self.instructions = dockerfile.parse(dockerfile_text)
        self.build_args = build_args
        self.progress = Steps(progress)
        self.step: Step | None = None   # the step being run, for its output and CACHED mark
        self.no_cache = no_cache
        self.secrets = secrets or {}
        if network not in NETWORKS:
            raise BuildError(f"invalid network {network!r}: expected one of {', '.join(NETWORKS)}")
        self.network = network
        self.pull = pull                # pull every base image, even one in the store (`docker build --pull`)
        self.pulled: dict[str, Image] = {}
        self.labels = labels or {}      # on the final image (`docker build --label`)
        self.stage_prefix = ""
        self.stage_steps = [0, 0]       # [done, total] of the current stage's steps
        self.ignore = IgnoreRules.for_context(self.context)
        self.cache_dir = store.root / "build-cache"
        self.cache_dir.mkdir(exist_ok=True)
        self.stages: list[Stage] = []
        self.global_args: dict[str, str] = {}
        self.auto_args = platform_args()

    def build(self, tag: str | None = None, target: str | None = None) -> Image:
        with self.store.layout.using():
            sizes = self._stage_sizes()
            stage: Stage | None = None
            for inst in self.instructions:
                if inst.cmd == "FROM" and target and stage is not None and stage.name == target.lower():
                    break  # the target stage is complete; later stages are not needed
                if inst.cmd == "FROM":
                    index = len(self.stages)
                    name, size = sizes[index]
                    self.stage_prefix = f"{name or f'stage-{index}'} " if len(sizes) > 1 else ""
                    self.stage_steps = [0, size]
                    with self._vertex(inst, self._from_title(inst)):
                        stage = self._from(inst)
                    self.stages.append(stage)
                    self._onbuild_triggers(stage, inst)
                elif stage is None:
                    self._global_arg(inst)
                else:
                    self._instruction(stage, inst)
            assert stage is not None
            if target and stage.name != target.lower():
                raise BuildError(f"target stage {target!r} not found in the Dockerfile")
            stage.config["created"] = stage.created
            stage.config.pop("rootfs", None)
            if self.labels:
                stage.runtime.setdefault("Labels", {}).update(self.labels)
            with self.progress.step("exporting to image") as step:
                img = self.store.commit(stage.config, stage.layers, tag)
                step.note(f"writing image {img.id} done")
                if img.name:
                    step.note(f"naming to {img.name} done")
            self.progress.total()
            return img

    # ---- progress ------------------------------------------------------------
    def _stage_sizes(self) -> list[tuple[str | None, int]]:
        """(name, number of steps) of each stage, for the `[name k/n]` step titles."""
        out: list[tuple[str | None, int]] = []
        for inst in self.instructions:
            if inst.cmd == "FROM":
                parts = inst.args.split()
                out.append((parts[2].lower() if len(parts) == 3 and parts[1].upper() == "AS" else None, 0))
            if out and inst.cmd in FS_STEPS:
                out[-1] = (out[-1][0], out[-1][1] + 1)
        return out

    def _from_title(self, inst: Instruction) -> str:
        parts = dockerfile.words(inst.args, {**self.auto_args, **self.global_args}, inst.lineno)
        return f"FROM {parts[0]}" if parts else str(inst)

    @contextlib.contextmanager
    def _vertex(self, inst: Instruction, title: str | None = None) -> Iterator[Step]:
        self.stage_steps[0] += 1
        done, total = self.stage_steps
        with self.progress.step(f"[{self.stage_prefix}{done}/{max(done, total)}] {title or inst.title()}") as step:
            self.step = step
            try:
                yield step
            finally:
                self.step = None

    def _log(self, line: str) -> None:
        if self.step is not None:
            self.step.log(line)
        else:
            self.progress.out(line)

    def _instruction(self, stage: Stage, inst: Instruction) -> None:
        if inst.cmd in FS_STEPS:
            with self._vertex(inst):
                self._step(stage, inst)
        else:
            self._step(stage, inst)

    def _onbuild_triggers(self, stage: Stage, from_inst: Instruction) -> None:
        """Run the base image's ONBUILD triggers right after FROM; they are not passed on to this image."""
        triggers = stage.runtime.pop("OnBuild", None) or []
        parsed = [dockerfile.trigger(t, from_inst.lineno) for t in triggers]
        self.stage_steps[1] += sum(1 for t in parsed if t.cmd in FS_STEPS)
        for trig in parsed:
            self._instruction(stage, trig)

    # ---- instructions --------------------------------------------------------
    def _global_arg(self, inst: Instruction) -> None:
        if inst.cmd != "ARG":
            raise inst.error("only ARG may come before the first FROM")
        for name, value in self._arg_defs(inst, {**self.auto_args, **self.global_args}):
            default = value if value is not None else self.auto_args.get(name, "")
            self.global_args[name] = self.build_args.get(name, default)

    def _arg_defs(self, inst: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for w in dockerfile.words(inst.args, env, inst.lineno):
            name, eq, value = w.partition("=")
            if not dockerfile.VAR_NAME.fullmatch(name):
                raise inst.error(f"invalid argument name {name!r}")
            out.append((name, value if eq else None))
        return out

    def _from(self, inst: Instruction) -> Stage:
        host = f"linux/{host_arch()}"
        # BUILDPLATFORM/TARGETPLATFORM are what multi-arch Dockerfiles put here; this builder makes host images only.
        global_vars = {**self.auto_args, **self.global_args}
        platform = dockerfile.expand(inst.flags.get("platform", host), global_vars, inst.lineno)
        if platform not in (host, f"{host}/"):
            raise inst.error(f"--platform={platform}: only the host platform {host} can be built here")
        parts = dockerfile.words(inst.args, global_vars, inst.lineno)
        if len(parts) == 3 and parts[1].upper() == "AS":
            base, name = parts[0], parts[2].lower()
        elif len(parts) == 1:
            base, name = parts[0], None
        else:
            raise inst.error("expected FROM IMAGE [AS NAME]")
        named = self._stage(base)
        if base == "scratch":
            stage = Stage(name, [], {"config": {}}, _h("scratch"), "1970-01-01T00:00:00Z")
        elif named is not None:
            stage = Stage(name, list(named.layers), copy.deepcopy(named.config), _h("stage", named.key), named.created)
        else:
            img = self._image(inst, base, f"base image {base!r}")
            stage = Stage(name, list(img.layers), copy.deepcopy(img.config), _h("image", img.manifest_digest),
                          img.created or "1970-01-01T00:00:00Z")
        stage.config.pop("rootfs", None)
        stage.config.setdefault("history", [])
        return stage

    def _image(self, inst: Instruction, name: str, what: str) -> Image:
        """An image of the store; one that is not there is pulled as `pkctl image pull` does: through the
        mirrors of registries.yaml, with the credentials of Docker's config.json."""
        try:
            img = self.store.resolve(name)
            ref = reference.parse(name)
        except ImageError as e:  # not a name (nor an image ID)
            raise inst.error(f"{what}: {e}") from None
        if ref.registry != LOCAL_REGISTRY and self.pull and name not in self.pulled:
            img = None  # --pull: the registry's current image, once per build
        if img is not None:
            return self.pulled.get(name, img)
        if ref.registry == LOCAL_REGISTRY:
            raise inst.error(f"{what} is not in the local store ({LOCAL_REGISTRY} images are built on this "
                             "machine, never pulled): build or load it first")
        log = self._log

        class Reporter:
            def line(self, text: str) -> None:
                log(text)

            def progress(self, digest: str, done: int, total: int) -> None:
                if done >= total > 0:
                    log(f"sha256:{digest.split(':', 1)[-1][:12]} {total}B done")
        try:
            self.pulled[name] = self.store.pull(name, reporter=Reporter()).image
            return self.pulled[name]
        except ImageError as e:
            raise inst.error(f"cannot pull {what}: {e}") from None

    def _stage(self, ref: str) -> Stage | None:
        for s in self.stages:
            if s.name == ref.lower():
                return s
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None

    def _step(self, stage: Stage, inst: Instruction) -> None:
        rt = stage.runtime
        env = stage.vars()
        if inst.cmd == "ARG":
            for name, value in self._arg_defs(inst, env):
                default = value if value is not None else self.global_args.get(name, self.auto_args.get(name, ""))
                stage.args[name] = self.build_args.get(name, default)
            self._meta(stage, inst, str(sorted(stage.args.items())))
        elif inst.cmd == "ENV":
            current = stage.env()
            current.update(dockerfile.key_values(inst, env))
            rt["Env"] = [f"{k}={v}" for k, v in current.items()]
            self._meta(stage, inst)
        elif inst.cmd == "LABEL":
            rt.setdefault("Labels", {}).update(dict(dockerfile.key_values(inst, env)))
            self._meta(stage, inst)
        elif inst.cmd == "WORKDIR":
            path = dockerfile.expand(inst.args, env, inst.lineno)
            rt["WorkingDir"] = os.path.normpath(os.path.join(rt.get("WorkingDir") or "/", path))
            workdir = rt["WorkingDir"]

            def mkdir(root: Path, _bundle: Path) -> None:
                makedirs_in_root(root, workdir)
            self._layer(stage, inst, "", mkdir)
        elif inst.cmd == "USER":
            rt["User"] = dockerfile.expand(inst.args, env, inst.lineno)
            self._meta(stage, inst)
        elif inst.cmd == "EXPOSE":
            for port in dockerfile.words(inst.args, env, inst.lineno):
                numbers, _, proto = port.partition("/")
                first, dash, last = numbers.partition("-")  # a range, `EXPOSE 8000-8002`, as Docker takes it
                last = last if dash else first
                if not (first.isdigit() and last.isdigit() and 0 < int(first) <= int(last) < 65536) or \
                        proto.lower() not in ("", "tcp", "udp", "sctp"):
                    raise inst.error(f"invalid port {port!r}")
                for number in range(int(first), int(last) + 1):
                    rt.setdefault("ExposedPorts", {})[f"{number}/{(proto or 'tcp').lower()}"] = {}
            self._meta(stage, inst)
        elif inst.cmd == "VOLUME":
            for v in dockerfile.json_form(inst.args) or dockerfile.words(inst.args, env, inst.lineno):
                rt.setdefault("Volumes", {})[v] = {}
            self._meta(stage, inst)
        elif inst.cmd in ("CMD", "ENTRYPOINT"):
            command = self._command(stage, inst)
            if inst.cmd == "ENTRYPOINT":
                rt["Entrypoint"] = command
                if stage.cmd_from_base:  # Docker: a new ENTRYPOINT drops the CMD inherited from the base
                    rt.pop("Cmd", None)
            else:
                rt["Cmd"] = command
                stage.cmd_from_base = False
            self._meta(stage, inst)
        elif inst.cmd == "SHELL":
            shell = dockerfile.json_form(inst.args)
            if not shell:
                raise inst.error('SHELL needs the JSON form, e.g. SHELL ["/bin/sh", "-c"]')
            rt["Shell"] = shell
            self._meta(stage, inst)
        elif inst.cmd == "STOPSIGNAL":
            rt["StopSignal"] = dockerfile.expand(inst.args, env, inst.lineno)
            self._meta(stage, inst)
        elif inst.cmd == "MAINTAINER":
            stage.config["author"] = inst.args
            self._meta(stage, inst)
        elif inst.cmd == "HEALTHCHECK":
            rt["Healthcheck"] = dockerfile.healthcheck(inst)
            self._meta(stage, inst)
        elif inst.cmd == "ONBUILD":
            word, _, rest = inst.args.partition(" ")
            rt.setdefault("OnBuild", []).append(f"{word.upper()} {rest.strip()}".rstrip())
            self._meta(stage, inst)
        elif inst.cmd == "RUN":
            self._run(stage, inst)
        elif inst.cmd in ("COPY", "ADD"):
            self._copy(stage, inst)
        elif inst.cmd == "FROM":  # pragma: no cover - handled by build()
            raise AssertionError

    def _command(self, stage: Stage, inst: Instruction) -> list[str] | None:
        exec_form = dockerfile.json_form(inst.args)
        if exec_form is not None:
            return exec_form
        if not inst.args:
            return None
        shell = stage.runtime.get("Shell") or ["/bin/sh", "-c"]
        if inst.heredocs and dockerfile.HEREDOC.fullmatch(inst.args):
            return [*shell, inst.heredocs[0].body]   # `RUN <<EOF`: the here-document is the script
        # `RUN cmd <<EOF`: the shell reads the here-document itself
        return [*shell, inst.args + "".join(f"\n{h.body}{h.name}" for h in inst.heredocs)]

    def _run(self, stage: Stage, inst: Instruction) -> None:
        args = self._command(stage, inst)
        assert args
        rt = stage.runtime
        env = buildrun.environment({**stage.args, **stage.env()})
        cwd = rt.get("WorkingDir") or "/"
        user = rt.get("User") or ""
        network = inst.flags.get("network", self.network)
        if network not in NETWORKS:
            raise inst.error(f"--network={network}: expected one of {', '.join(NETWORKS)}")
        vars_ = stage.vars()  # (BuildKit expands variables in --mount values)
        specs = [buildmounts.parse(inst, dockerfile.expand(m, vars_, inst.lineno), cwd) for m in inst.mounts]
        inputs = [self._mount_inputs(spec, inst) for spec in specs]

        def action(root: Path, bundle: Path) -> None:
            makedirs_in_root(root, cwd)
            bundle.mkdir(parents=True, exist_ok=True)
            with contextlib.ExitStack() as stack:
                mounts = [m for spec in specs for m in buildmounts.oci_mounts(
                    spec, inst, stack, bundle, self.store.root, self.secrets, self.context, self.ignore,
                    self._source_rootfs)]
                netns = None
                if network == "default":
                    sandbox = stack.enter_context(buildnet.sandbox())
                    netns = sandbox.netns
                    for name, text in (("resolv.conf", sandbox.resolv_conf),
                                       ("hosts", f"127.0.0.1\tlocalhost {buildrun.HOSTNAME}\n"
                                                 "::1\tlocalhost ip6-localhost ip6-loopback\n")):
                        (bundle / name).write_text(text)
                        if os.path.isdir(resolve_in_root(root, "/etc")):
                            mounts.append(buildmounts.bind(bundle / name, f"/etc/{name}", readonly=True))
                stubs = [(m["destination"], buildmounts.first_missing(root, m["destination"])) for m in mounts]
                try:
                    buildrun.run(bundle, root, args, env, cwd, user, self._log, mounts, netns)
                finally:
                    for target, created in reversed(stubs):
                        if created:
                            buildmounts.remove_stubs(root, target, created)
        # (keys of RUN steps without mounts are unchanged from before mounts existed: caches stay valid)
        self._layer(stage, inst, _h(env, user, cwd, *([inputs] if inputs else [])), action)

    def _mount_inputs(self, spec: buildmounts.MountSpec, inst: Instruction) -> str:
        """What a mount adds to the step's cache key: the content a bind mount shows (cache, secret and tmpfs
        mounts add nothing, as in BuildKit)."""
        if spec.type != "bind":
            return ""
        if spec.from_ is not None:
            named = self._stage(spec.from_)
            if named is not None:
                return named.key
            return self._image(inst, spec.from_, f"--mount from={spec.from_}: no such stage, and image "
                                                 f"{spec.from_!r}").manifest_digest
        return self._hash_inputs(context_sources(self.context, spec.source or ".", self.ignore, inst.lineno))

    def _copy(self, stage: Stage, inst: Instruction) -> None:
        env = stage.vars()
        parts = dockerfile.json_form(inst.args) or dockerfile.words(inst.args, env, inst.lineno)
        if len(parts) < 2:
            raise inst.error("needs at least one source and a destination")
        *sources, dest = parts
        workdir = stage.runtime.get("WorkingDir") or "/"
        # Normalised, so no `..` survives into host-side path handling; a trailing / still means "into".
        dest_abs = os.path.normpath(os.path.join(workdir, dest))
        if dest.endswith(("/", "/.", "/..")) or dest in (".", ".."):
            dest_abs = dest_abs.rstrip("/") + "/"
        chown = _flag(inst, "chown", env)
        chmod = _chmod(inst, env)
        from_ref = _flag(inst, "from", env)
        if inst.cmd == "ADD" and any(_is_url(s) for s in sources):
            self._add_urls(stage, inst, sources, dest_abs, chown, chmod)
            return
        docs = {h.name: h for h in inst.heredocs}
        if any(s.startswith("<<") and s.lstrip("<-") in docs for s in sources):
            if not all(s.startswith("<<") and s.lstrip("<-") in docs for s in sources):
                raise inst.error("cannot mix here-documents and other sources in one instruction")
            self._copy_heredocs(stage, inst, [docs[s.lstrip("<-")] for s in sources], dest_abs, chown, chmod, env)
            return
        if from_ref is not None:
            with self._source_rootfs(from_ref, inst) as (src_root, inputs):
                self._layer(stage, inst, inputs, lambda root, _b: self._copy_into(
                    root, [resolve_in_root(src_root, s) for s in sources], dest_abs, chown, chmod, None, inst,
                    keep=True))
            return
        paths = [p for s in sources for p in context_sources(self.context, s, self.ignore, inst.lineno)]
        multi = len(paths) > 1 or any(dockerfile_glob(s) for s in sources)
        if multi and not dest_abs.endswith("/"):
            raise inst.error("with several sources the destination must be a directory ending in /")
        self._layer(stage, inst, self._hash_inputs(paths),
                    lambda root, _b: self._copy_into(root, paths, dest_abs, chown, chmod, self.context, inst,
                                                     extract_tars=inst.cmd == "ADD"))

    def _copy_heredocs(self, stage: Stage, inst: Instruction, docs: list[dockerfile.Heredoc], dest: str,
                       chown: str | None, chmod: int | None, env: dict[str, str]) -> None:
        """`COPY <<name.txt /dest/`: each here-document is a file of that name (variables expanded unless the
        delimiter is quoted), mode 0644."""
        if len(docs) > 1 and not dest.endswith("/"):
            raise inst.error("with several sources the destination must be a directory ending in /")
        work = self.store.layout.temp_path("heredoc")
        work.mkdir(parents=True)
        try:
            paths = []
            for doc in docs:
                path = work / doc.name
                path.write_text(doc.body if doc.quoted else dockerfile.expand(doc.body, env, inst.lineno))
                os.chmod(path, 0o644)
                paths.append(path)
            contents = [p.read_bytes().decode(errors="replace") for p in paths]
            self._layer(stage, inst, _h(contents), lambda root, _b: self._copy_into(
                root, paths, dest, chown, chmod, None, inst))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _copy_into(self, root: Path, paths: list[Path], dest: str, chown: str | None, chmod: int | None,
                   ctx: Path | None, inst: Instruction, keep: bool = False, extract_tars: bool = False) -> None:
        if chown:
            uid, gid = buildrun.resolve_user(root, chown)
            owner = Owner(uid, gid, chmod)
        else:
            owner = Owner(None, None, chmod) if keep else Owner(0, 0, chmod)
        mkdir_uid, mkdir_gid = (owner.uid or 0, owner.gid or 0) if chown else (0, 0)
        for src in paths:
            if not os.path.lexists(src):
                raise inst.error(f"source {src.name!r} not found")
            if src.is_dir() and not src.is_symlink():
                makedirs_in_root(root, dest, mkdir_uid, mkdir_gid)
                copy_entry(src, root, dest, owner, self.ignore if ctx else None, ctx)
            elif extract_tars and _is_archive(src):
                target = makedirs_in_root(root, dest, mkdir_uid, mkdir_gid)
                with open(src, "rb") as f:
                    extract(decompressed(f), target, self.store.limits, whiteouts=False)
            else:
                into_dir = dest.endswith("/") or resolve_in_root(root, dest).is_dir()
                dest_file = os.path.join(dest, src.name) if into_dir else dest
                makedirs_in_root(root, os.path.dirname(dest_file.rstrip("/")), mkdir_uid, mkdir_gid)
                copy_entry(src, root, dest_file, owner)

    def _add_urls(self, stage: Stage, inst: Instruction, urls: list[str], dest: str, chown: str | None,
                  chmod: int | None) -> None:
        """ADD of http(s) URLs: downloaded on every build (the content decides whether the layer is reused),
        stored with mode 0600 (unless --chmod) and the server's Last-Modified time, never extracted."""
        if not all(_is_url(u) for u in urls):
            raise inst.error("cannot mix URLs and build-context sources in one ADD")
        if len(urls) > 1 and not dest.endswith("/"):
            raise inst.error("with several sources the destination must be a directory ending in /")
        if "checksum" in inst.flags and len(urls) != 1:
            raise inst.error("--checksum needs exactly one URL")
        with contextlib.ExitStack() as stack:
            work = self.store.layout.temp_path("add")
            work.mkdir(parents=True)
            stack.callback(shutil.rmtree, work, True)
            files: list[tuple[Path, str]] = []
            digests = []
            for i, url in enumerate(urls):
                if url.startswith("git@") or url.endswith(".git"):
                    raise inst.error(f"ADD of a git repository ({url}) is not supported")
                name = os.path.basename(urllib.parse.urlsplit(url).path)
                target = os.path.join(dest, name) if dest.endswith("/") else dest
                if dest.endswith("/") and not name:
                    raise inst.error(f"cannot name the file of {url}: give a destination file name")
                path = work / str(i)
                digest = download(inst, url, path, self._log)
                if "checksum" in inst.flags and inst.flags["checksum"] != digest:
                    raise inst.error(f"checksum of {url} is {digest}, not the expected {inst.flags['checksum']}")
                files.append((path, target))
                digests.append(digest)

            def action(root: Path, _bundle: Path) -> None:
                uid, gid = buildrun.resolve_user(root, chown) if chown else (0, 0)
                for path, target in files:
                    makedirs_in_root(root, os.path.dirname(target), uid, gid)
                    dest_file = resolve_in_root(root, target)
                    if dest_file.is_dir():
                        raise inst.error(f"{target} is a directory in the image: end the destination with /")
                    copy_entry(path, root, target, Owner(uid, gid, 0o600 if chmod is None else chmod))
            self._layer(stage, inst, _h(urls, digests), action)

    def _hash_inputs(self, paths: list[Path]) -> str:
        h = hashlib.sha256()
        for top in paths:
            walk = [top] if not top.is_dir() or top.is_symlink() else sorted(
                Path(d) / f for d, dirs, files in os.walk(top) for f in dirs + files)
            for p in [top, *walk]:
                rel = p.relative_to(self.context).as_posix()
                if rel != "." and self.ignore.excluded(rel):
                    continue
                st = os.lstat(p)
                h.update(f"{rel}\0{st.st_mode}\0".encode())
                if p.is_symlink():
                    h.update(os.readlink(p).encode())
                elif p.is_file():
                    with open(p, "rb") as f:
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
        return h.hexdigest()

    @contextlib.contextmanager
    def _source_rootfs(self, ref: str, inst: Instruction) -> Iterator[tuple[Path, str]]:
        """The rootfs of a stage or image for COPY --from, mounted for the duration."""
        stage = self._stage(ref)
        if stage is not None:
            layers, inputs = stage.layers, stage.key
        else:
            img = self._image(inst, ref, f"--from={ref}: no such stage, and image {ref!r}")
            layers, inputs = img.layers, img.manifest_digest
        with self._mounted(layers) as (root, _upper, _bundle):
            yield root, inputs

    # ---- layers --------------------------------------------------------------
    def _meta(self, stage: Stage, inst: Instruction, extra: str = "") -> None:
        stage.key = _h(stage.key, str(inst), extra)
        stage.config["history"].append({"created": stage.created, "created_by": str(inst), "empty_layer": True})

    def _layer(self, stage: Stage, inst: Instruction, inputs: str, action: Callable[[Path, Path], None]) -> None:
        key = _h(stage.key, str(inst), inputs)
        entry = None if self.no_cache else self._cache_get(key)
        if entry is not None:
            if self.step is not None:
                self.step.cached = True
            layer = Layer(**entry["layer"]) if entry["layer"] else None
            created = entry["created"]
        else:
            with self._mounted(stage.layers) as (root, upper, bundle):
                action(root, bundle)
                unmount(root)
                layer = None if is_empty(upper) else write_layer(self.store.layout, upper)
            created = now_rfc3339()
            self._cache_put(key, layer, created)
        stage.key = key
        stage.created = created
        hist: dict[str, Any] = {"created": created, "created_by": str(inst)}
        if layer:
            stage.layers.append(layer)
        else:
            hist["empty_layer"] = True
        stage.config["history"].append(hist)

    @contextlib.contextmanager
    def _mounted(self, layers: list[Layer]) -> Iterator[tuple[Path, Path, Path]]:
        work_dir = self.store.layout.temp_path("build")
        root, upper, work, bundle = (work_dir / d for d in ("rootfs", "upper", "work", "bundle"))
        try:
            for d in (root, upper, work):
                d.mkdir(parents=True)
            mount_overlay(self.store.layer_dirs(layers), upper, work, root, self.store.layout.links)
            try:
                yield root, upper, bundle
            finally:
                unmount(root)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = orjson.loads((self.cache_dir / key).read_bytes())
        except (OSError, ValueError):
            return None
        layer = entry.get("layer")
        if layer and not self.store.layout.has_blob(layer["digest"]):
            return None  # the layer was garbage-collected since
        return entry

    def _cache_put(self, key: str, layer: Layer | None, created: str) -> None:
        doc = {"layer": layer.__dict__ if layer else None, "created": created}
        tmp = self.cache_dir / f".{key}.{uuid.uuid4().hex}.tmp"  # builders in other processes may share the cache
        tmp.write_bytes(orjson.dumps(doc))
        os.replace(tmp, self.cache_dir / key)


def prune_cache(store: "ImageStore") -> int:
    """Drop build-cache entries whose layer has been garbage-collected; returns how many."""
    removed = 0
    cache_dir = store.root / "build-cache"
    for entry in cache_dir.iterdir() if cache_dir.is_dir() else []:
        try:
            layer = orjson.loads(entry.read_bytes()).get("layer")
        except (OSError, ValueError):
            layer = {"digest": "sha256:" + "0" * 64}  # unreadable: drop it
        if layer and not store.layout.has_blob(layer["digest"]):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def platform_args() -> dict[str, str]:
    """BuildKit's automatic platform ARGs (`ARG TARGETARCH` in a stage gets its value); the build and target
    platforms are both the host's: this builder makes host images only."""
    arch = host_arch()
    return {f"{side}{key}": value for side in ("BUILD", "TARGET")
            for key, value in (("PLATFORM", f"linux/{arch}"), ("OS", "linux"), ("ARCH", arch), ("VARIANT", ""))}


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "git@"))


def _flag(inst: Instruction, name: str, env: dict[str, str]) -> str | None:
    """A flag's value with its variables expanded (`COPY --chown=$UID:$GID --from=$BASE`)."""
    value = inst.flags.get(name)
    return None if value is None else dockerfile.expand(value, env, inst.lineno)


def _chmod(inst: Instruction, env: dict[str, str]) -> int | None:
    value = _flag(inst, "chmod", env)
    if value is None:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise inst.error(f"invalid --chmod={value}: expected an octal mode such as 755")
    return mode


def dockerfile_glob(src: str) -> bool:
    return any(c in src for c in "*?[")


def _is_archive(path: Path) -> bool:
    import tarfile
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def build(store: "ImageStore", context: Path, dockerfile_path: Path | None = None, tag: str | None = None,
          build_args: dict[str, str] | None = None, target: str | None = None, progress: Progress = print,
          no_cache: bool = False, secrets: dict[str, bytes] | None = None, network: str = "default",
          pull: bool = False, labels: dict[str, str] | None = None) -> Image:
    if tag:
        reference.parse(tag)  # a bad tag fails before any work is done
    context = Path(context)
    if not context.is_dir():
        raise BuildError(f"build context {context} is not a directory")
    path = Path(dockerfile_path) if dockerfile_path else context / "Dockerfile"
    try:
        text = path.read_text()
    except OSError as e:
        raise BuildError(f"cannot read Dockerfile {path}: {e.strerror}") from None
    return Builder(store, context, text, build_args or {}, progress, no_cache, secrets, network, pull,
                   labels).build(tag, target)
