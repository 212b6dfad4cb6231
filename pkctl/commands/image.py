"""`pkctl image ...`: the node-local image store (like `docker image` / `crictl images`).

These commands work on the store directory directly, not through the API server: images are node state.
The store is `--root`, else the one of the local cluster (`pkctl cluster up`) the kubeconfig belongs to (its
first node's), else <pkube home>/images. `build` and `load` put images on every node of that cluster
(`--all-nodes` insists on one): a node with a store of its own gets a copy.
"""
from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from images import auth, mirrors, reference
from images.busybox import BUSYBOX_IMAGE, ensure_busybox
from images.errors import ImageError
from images.image import Image, host_arch
from images.registry import Registry
from images.store import ImageStore, default_root
from pkctl.errors import CommandError, as_command_error
from pkctl.printers import docker_duration


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=None,
                        help="image store directory (default: the store of the local cluster the kubeconfig "
                             "belongs to, else $PKUBE_HOME/images, i.e. /var/lib/pkube/images)")
    nodes = argparse.ArgumentParser(add_help=False)
    nodes.add_argument("--all-nodes", action="store_true",
                       help="put the image on every node of the local cluster the kubeconfig belongs to (the "
                            "default without --root; an error when the kubeconfig is not such a cluster's)")
    p = sub.add_parser("image", help="manage images on this node (build, pull, push, load, save, ls, ...)")
    isub = p.add_subparsers(dest="image_command", metavar="COMMAND")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help: str,
            aliases: list[str] | None = None, every_node: bool = False) -> argparse.ArgumentParser:
        sp = isub.add_parser(name, parents=[common, nodes] if every_node else [common], help=help,
                             aliases=aliases or [])
        sp.set_defaults(func=_guarded(handler))
        return sp

    sp = add("ls", _ls, "list images", ["list"])
    sp.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    sp.add_argument("--digests", action="store_true", help="show manifest digests")
    sp = add("inspect", _inspect, "show an image's configuration and layers as JSON")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp = add("rm", _rm, "remove images (and the layers no other image uses)", ["rmi"])
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("-f", "--force", action="store_true", help="remove even if a container uses the image")
    sp = add("tag", _tag, "give an image another name")
    sp.add_argument("source", metavar="SOURCE")
    sp.add_argument("target", metavar="TARGET")
    add("prune", _prune, "delete blobs and layers no image or container uses")
    sp = add("load", _load, "load images from a docker-save or OCI archive", every_node=True)
    sp.add_argument("-i", "--input", metavar="FILE", type=Path, help="archive to read (default: standard input)")
    sp.add_argument("file", nargs="?", metavar="FILE", type=Path, help="archive to read (like -i FILE)")
    sp = add("save", _save, "save images to an archive (OCI layout + docker-save manifest)")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("-o", "--output", metavar="FILE", type=Path, help="archive to write (default: standard output)")
    sp = add("pull", _pull, "pull an image from a registry")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--insecure-registry", action="store_true", help="use plain http (loopback registries always do)")
    sp = add("push", _push, "push an image to a registry")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("destination", nargs="?", metavar="DESTINATION", help="push under this name instead")
    sp.add_argument("--insecure-registry", action="store_true", help="use plain http (loopback registries always do)")
    sp = add("login", _login, "log in to a registry (credentials stored in Docker's config.json)")
    sp.add_argument("registry", nargs="?", default="docker.io", metavar="REGISTRY")
    sp.add_argument("-u", "--username", help="username")
    sp.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    sp.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sp.add_argument("--insecure-registry", action="store_true", help="use plain http (loopback registries always do)")
    sp = add("logout", _logout, "forget the credentials of a registry")
    sp.add_argument("registry", nargs="?", default="docker.io", metavar="REGISTRY")
    sp = add("build", _build, "build an image from a Dockerfile", every_node=True)
    sp.add_argument("context", metavar="DIR", type=Path)
    sp.add_argument("-t", "--tag", metavar="NAME[:TAG]")
    sp.add_argument("-f", "--file", metavar="DOCKERFILE", type=Path)
    sp.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    sp.add_argument("--target", metavar="STAGE")
    sp.add_argument("--no-cache", action="store_true")
    sp.add_argument("--secret", action="append", default=[], metavar="id=ID[,src=FILE|env=VAR]",
                    help="a secret for RUN --mount=type=secret (default source: the environment variable ID)")
    sp.add_argument("--network", choices=["default", "none"], default="default",
                    help="network of the RUN steps: default (a sandbox with NAT to the host) or none")
    sp.add_argument("--pull", action="store_true", help="always pull the base images, even those present")
    sp.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a label of the image")
    sp.add_argument("--platform", metavar="OS/ARCH", help="only the host's platform can be built here")
    sp.add_argument("--progress", choices=["auto", "plain", "tty", "quiet"], default="auto",
                    help="progress output: BuildKit's plain lines (auto, plain, tty) or none (quiet, like -q)")
    sp.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    add("build-busybox", _build_busybox,
        f"build the bundled {BUSYBOX_IMAGE} from manifests/images/busybox and the host's busybox-static")


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ImageError as e:
            raise CommandError(str(e)) from None
        except PermissionError as e:
            raise CommandError(f"permission denied: {e.filename or e} (pkctl image needs root)") from None
    return run


def _store(args: argparse.Namespace) -> ImageStore:
    return ImageStore(_node_roots(args)[0])


def _node_roots(args: argparse.Namespace) -> list[Path]:
    """The stores an image goes to: --root; else each distinct one of the nodes of the local cluster the
    kubeconfig belongs to (the first node's first); else the default store."""
    from pkctl.cluster.home import HomeError
    from pkctl.cluster.images import cluster_image_roots
    every_node = getattr(args, "all_nodes", False)
    if args.root:
        if every_node:
            raise CommandError("--all-nodes and --root are mutually exclusive: --all-nodes finds the nodes' stores")
        return [args.root]
    with as_command_error(HomeError):
        roots = cluster_image_roots(getattr(args, "kubeconfig", None))
    if roots is None and every_node:
        raise CommandError("--all-nodes: the kubeconfig is not a local cluster's (pkctl cluster up): push the "
                           "image to a registry the nodes pull from, or load it on each node")
    return roots or [default_root()]


def _to_other_nodes(args: argparse.Namespace, store: ImageStore, refs: list[str]) -> None:
    from pkctl.cluster.images import copy_images
    quiet = getattr(args, "quiet", False)
    copy_images(refs, store, _node_roots(args), progress=lambda line: None if quiet else print(line, flush=True))


# ---- formatting ----------------------------------------------------------------
def human_size(n: float) -> str:
    """Docker's style: decimal units, three significant digits."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    raise AssertionError


def human_ago(created: str | None, now: float | None = None) -> str:
    if not created:
        return "N/A"
    try:
        t = dt.datetime.fromisoformat(created).timestamp()
    except ValueError:
        return "N/A"
    secs = (now if now is not None else time.time()) - t
    return f"{docker_duration(secs)} ago"


def _short_id(img: Image) -> str:
    return img.id.split(":", 1)[1][:12]


def _repo_tag(img: Image) -> tuple[str, str]:
    ref = reference.parse(str(img.name))
    return ref.familiar_name, ref.tag or "<none>"


# ---- commands -------------------------------------------------------------------
def _ls(args: argparse.Namespace) -> int:
    images = _store(args).list()
    if args.quiet:
        seen = []
        for img in images:
            if _short_id(img) not in seen:
                seen.append(_short_id(img))
        for short in seen:
            print(short)
        return 0
    rows = [["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID", "CREATED", "SIZE"]]
    for img in images:
        repo, tag = _repo_tag(img)
        rows.append([repo, tag, *([img.manifest_digest] if args.digests else []), _short_id(img),
                     human_ago(img.created), human_size(img.size)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def inspect_doc(store: ImageStore, img: Image) -> dict[str, Any]:
    names = [n for n, d in store.layout.names().items() if d["digest"] == img.manifest_digest]
    cfg = img.config.get("config") or {}
    return {
        "Id": img.id,
        "RepoTags": [n for n in names if "@" not in n],
        "RepoDigests": [f"{reference.parse(n).name}@{img.manifest_digest}" for n in names],
        "Created": img.created,
        "Architecture": img.config.get("architecture"),
        "Os": img.config.get("os"),
        "Author": img.config.get("author", ""),
        "Size": img.size,
        "Config": {k: cfg.get(k) for k in ("User", "Env", "Entrypoint", "Cmd", "WorkingDir", "ExposedPorts",
                                            "Volumes", "Labels", "StopSignal", "Healthcheck", "OnBuild", "Shell")
                   if k in cfg},
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in img.layers]},
        "Manifest": {"Digest": img.manifest_digest, "MediaType": img.manifest_media_type,
                     "Layers": [layer.descriptor() for layer in img.layers]},
        "History": img.config.get("history", []),
    }


def _inspect(args: argparse.Namespace) -> int:
    store = _store(args)
    docs, missing = [], []
    for name in args.names:
        img = store.resolve(name)
        if img is None:
            missing.append(name)
        else:
            docs.append(inspect_doc(store, img))
    print(json.dumps(docs, indent=4))
    if missing:
        raise CommandError(f"no such image: {', '.join(missing)}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    store = _store(args)
    failed = []
    for name in args.names:
        try:
            for removed in store.remove(name, force=args.force):
                print(f"Untagged: {removed}")
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            failed.append(name)
    freed = store.gc()
    if freed["blobs"] or freed["layers"]:
        print(f"Deleted {freed['layers']} layers, {freed['blobs']} blobs ({human_size(freed['bytes'])})")
    return 1 if failed else 0


def _tag(args: argparse.Namespace) -> int:
    _store(args).tag(args.source, args.target)
    return 0


def _prune(args: argparse.Namespace) -> int:
    freed = _store(args).gc()
    print(f"Deleted {freed['layers']} layers, {freed['blobs']} blobs\nTotal reclaimed space: {human_size(freed['bytes'])}")
    return 0


def _load(args: argparse.Namespace) -> int:
    store = _store(args)
    images = _load_into(args, store)
    _to_other_nodes(args, store, [img.name or img.id for img in images])
    return 0


def _load_into(args: argparse.Namespace, store: ImageStore) -> list[Image]:
    if args.file is not None:
        if args.input is not None and args.input != args.file:
            raise CommandError("give the archive once: FILE or -i FILE")
        args.input = args.file
    if args.input is not None:
        images = store.load(args.input, progress=print)
    else:
        if sys.stdin.isatty():
            raise CommandError("requested load from stdin, but stdin is a terminal: use -i FILE or redirect input")
        # Archives need random access (index first, blobs after), so stdin is spooled to the store's tmp dir.
        with tempfile.NamedTemporaryFile(dir=store.layout.tmp, prefix="stdin-", suffix=".tar") as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
            spool.flush()
            images = store.load(Path(spool.name), progress=print)
    if not images:
        raise CommandError(f"{args.input or 'the archive'} contains no images")
    return images


def _save(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.output is not None:
        store.save(args.names, args.output)
        return 0
    if sys.stdout.isatty():
        raise CommandError("cowardly refusing to save to a terminal: use -o FILE or redirect output")
    with tempfile.TemporaryDirectory(dir=store.layout.tmp, prefix="stdout-") as d:
        out = Path(d) / "images.tar"
        store.save(args.names, out)
        with open(out, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()
    return 0


class TerminalReporter:
    """Pull/push progress: one self-updating line on a terminal, plain lines otherwise."""

    def __init__(self, stream: Any = sys.stdout):
        self.lock = threading.Lock()  # progress arrives from the download threads
        self.stream = stream
        self.tty = stream.isatty()
        self.done: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.last = 0.0

    def line(self, text: str) -> None:
        with self.lock:
            if self.tty and self.done:
                self.stream.write("\r\033[K")
            print(text, file=self.stream, flush=True)

    def progress(self, digest: str, done: int, total: int) -> None:
        with self.lock:
            self._progress(digest, done, total)

    def _progress(self, digest: str, done: int, total: int) -> None:
        self.done[digest], self.total[digest] = done, total
        now = time.monotonic()
        if not self.tty or (now - self.last < 0.1 and done < total):
            return  # redraw at most 10 times a second, and whenever a blob completes
        self.last = now
        finished = sum(1 for d in self.done if self.done[d] >= self.total[d] > 0)
        self.stream.write(f"\r\033[KDownloading {finished}/{len(self.done)} blobs: "
                          f"{human_size(sum(self.done.values()))} / {human_size(sum(self.total.values()))}")
        self.stream.flush()


def _pull(args: argparse.Namespace) -> int:
    reporter = TerminalReporter()
    result = _store(args).pull(args.name, insecure=args.insecure_registry, reporter=reporter)
    reporter.line(f"{len(result.downloaded)} layers downloaded ({human_size(result.bytes)}), "
                  f"{len(result.present)} already present")
    return 0


def _push(args: argparse.Namespace) -> int:
    _store(args).push(args.name, args.destination, insecure=args.insecure_registry, reporter=TerminalReporter())
    return 0


def _login(args: argparse.Namespace) -> int:
    registry = auth.registry_key(args.registry)
    username = args.username
    if not username:
        if not sys.stdin.isatty() or args.password_stdin:
            raise CommandError("username is required: use -u USER")
        username = input("Username: ").strip()
    if args.password_stdin:
        if args.password:
            raise CommandError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
        password = args.password
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise CommandError("cannot prompt for a password: stdin is not a terminal (use --password-stdin)")
    if not username or not password:
        raise CommandError("username and password are required")
    creds = auth.Credentials(username, password)
    host_config = mirrors.load(_store(args).registries_config).host(registry)
    Registry(registry, args.insecure_registry, creds, host_config=host_config).login()
    path = auth.save_login(registry, creds)
    print(f"Credentials stored in {path}\nLogin Succeeded")
    return 0


def _logout(args: argparse.Namespace) -> int:
    registry = auth.registry_key(args.registry)
    if auth.remove_login(registry):
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")
    return 0


def _build_busybox(args: argparse.Namespace) -> int:
    print(ensure_busybox(_store(args)))
    return 0


def _secret(item: str) -> tuple[str, bytes]:
    """`--secret id=ID[,src=FILE][,env=VAR][,type=file|env]` (Docker's syntax) -> (ID, its value)."""
    fields: dict[str, str] = {}
    for part in item.split(","):
        key, eq, value = part.partition("=")
        if not eq or key not in ("id", "src", "source", "env", "type"):
            raise CommandError(f"invalid --secret {item!r}: expected id=ID[,src=FILE|env=VAR]")
        fields["src" if key == "source" else key] = value
    sid = fields.get("id") or ""
    if not sid:
        raise CommandError(f"invalid --secret {item!r}: id=ID is required")
    kind = fields.get("type") or ("file" if "src" in fields else "env")
    if kind not in ("file", "env"):
        raise CommandError(f"invalid --secret {item!r}: type must be file or env")
    if kind == "env":
        var = fields.get("env") or fields.get("src") or sid
        if var not in os.environ:
            raise CommandError(f"--secret {item}: environment variable {var} is not set")
        return sid, os.environ[var].encode()
    src = fields.get("src") or sid
    try:
        return sid, Path(src).expanduser().read_bytes()
    except OSError as e:
        raise CommandError(f"--secret {item}: cannot read {src}: {e.strerror}") from None


def _build(args: argparse.Namespace) -> int:
    build_args = {}
    for item in args.build_arg:
        key, eq, value = item.partition("=")
        if not key:
            raise CommandError(f"invalid --build-arg {item!r}: expected KEY=VALUE")
        if not eq:  # like Docker: --build-arg KEY takes the value from the environment
            if key not in os.environ:
                continue
            value = os.environ[key]
        build_args[key] = value
    labels = {}
    for item in args.label:
        key, _, value = item.partition("=")
        if not key:
            raise CommandError(f"invalid --label {item!r}: expected KEY=VALUE")
        labels[key] = value
    host = f"linux/{host_arch()}"
    if args.platform and args.platform.rstrip("/") != host:
        raise CommandError(f"--platform={args.platform}: only the host platform {host} can be built here")
    args.quiet = args.quiet or args.progress == "quiet"
    store = _store(args)
    img = store.build(args.context, dockerfile_path=args.file, tag=args.tag, build_args=build_args,
                      target=args.target, no_cache=args.no_cache, network=args.network,
                      secrets=dict(_secret(item) for item in args.secret), pull=args.pull, labels=labels,
                      progress=(lambda _line: None) if args.quiet else (lambda line: print(line, flush=True)))
    _to_other_nodes(args, store, [img.name or img.id])
    if args.quiet:
        print(img.id)
    elif img.name:
        print(f"Successfully tagged {img.name}")
    return 0
