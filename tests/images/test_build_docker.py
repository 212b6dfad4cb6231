"""Dockerfiles as people write them (issue 16): FROM of an image to pull, RUN --mount (cache, bind, secret), RUN
with network (a sandbox with NAT; --network=none), ADD of a URL, HEALTHCHECK, ONBUILD. Real builds: runc,
overlay mounts, a netns with a veth and nftables, a loopback docker-registry with htpasswd auth."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from images.build import build
from images.buildmounts import SECRETS_DIR
from images.busybox import BUSYBOX_IMAGE, ensure_busybox
from images.errors import BuildError
from images.image import host_arch
from images.store import ImageStore
from tests.images.registry_fixture import start_registry, stop_registry
from tests.support.fileserver import FileServer
from tests.util import unique

pytestmark = pytest.mark.root
USER, PASSWORD = "bob", "b-s3cret"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    # Every address, so a RUN step reaches it through its sandbox's gateway (an address pkube made on the host).
    server = FileServer(tmp_path_factory.mktemp("www"), "0.0.0.0")
    try:
        yield server
    finally:
        server.close()


def _rootfs_files(store: ImageStore, tag: str) -> dict[str, bytes | None]:
    """Path -> content (None for directories) of every entry of the image's layers."""
    cid = unique()
    root = store.prepare_rootfs(tag, cid)
    try:
        out: dict[str, bytes | None] = {}
        for d, dirs, names in os.walk(root):
            for n in dirs:
                out["/" + os.path.relpath(os.path.join(d, n), root)] = None
            for n in names:
                p = os.path.join(d, n)
                out["/" + os.path.relpath(p, root)] = None if os.path.islink(p) else Path(p).read_bytes()
        return out
    finally:
        store.release_rootfs(cid)


def _layer_bytes(store: ImageStore, tag: str) -> bytes:
    return b"".join(store.layout.blob_path(layer.digest).read_bytes() for layer in store.get(tag).layers)


def test_from_pulls_a_missing_base_with_the_docker_credentials(busybox_store: ImageStore, store: ImageStore,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_registry(tmp_path / "reg", htpasswd=(USER, PASSWORD))
    try:
        docker = tmp_path / "docker"
        docker.mkdir()
        (docker / "config.json").write_text(json.dumps({"auths": {server.host: {"username": USER,
                                                                                 "password": PASSWORD}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(docker))
        base = f"{server.host}/pkt/base:{unique('b')}"
        digest = busybox_store.push(BUSYBOX_IMAGE, base)
        tool = f"{server.host}/pkt/tool:{unique('t')}"
        busybox_store.push(BUSYBOX_IMAGE, tool)
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"# syntax=docker/dockerfile:1.4\nARG BASE={base}\n"
                                        "FROM --platform=$BUILDPLATFORM ${BASE}\nRUN echo built > /built.txt\n"
                                        f"COPY --from={tool} /etc/passwd /tool-passwd\n")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nothing"))
        with pytest.raises(BuildError, match=r"line 3: FROM: cannot pull base image '.*': .*requires authentication"):
            build(store, ctx, tag="pkube.local/pulled:1", progress=lambda _: None)

        monkeypatch.setenv("DOCKER_CONFIG", str(docker))
        lines: list[str] = []
        build(store, ctx, tag="pkube.local/pulled:1", progress=lines.append)
        assert lines[0] == f"#1 [1/3] FROM {base}"
        assert any(line.startswith("#1 ") and f"Pulled {base}" in line for line in lines), lines
        assert store.get(base).manifest_digest == digest  # the base is in the store now, as after a pull
        built = _rootfs_files(store, "pkube.local/pulled:1")
        assert built["/built.txt"] == b"built\n" and built["/tool-passwd"] == built["/etc/passwd"]
        assert any(line.startswith("#3 ") and f"Pulled {tool}" in line for line in lines), lines

        # The registry's image changes: a build uses the stored base, unless --pull.
        pushed = store.push("pkube.local/pulled:1", base)  # another image under the base's name
        assert pushed != digest
        build(store, ctx, tag="pkube.local/pulled:2", progress=lambda _: None)
        assert store.get(base).manifest_digest == digest
        build(store, ctx, tag="pkube.local/pulled:3", pull=True, progress=lambda _: None)
        assert store.get(base).manifest_digest == pushed

        # `FROM busybox:<tag>` is docker.io's: with a registries.yaml mirror (and its credentials), no Docker
        # Hub traffic, the mirror serves it.
        tag = unique("hub")
        busybox_store.push(BUSYBOX_IMAGE, f"{server.host}/library/busybox:{tag}")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nothing"))
        store.registries_config.write_text(f'mirrors:\n  docker.io:\n    endpoint: ["http://{server.host}"]\n'
                                           f'configs:\n  "{server.host}":\n    auth: {{username: {USER}, '
                                           f'password: {PASSWORD}}}\n')
        (ctx / "Dockerfile").write_text(f"FROM busybox:{tag}\nRUN true\n")
        build(store, ctx, tag="pkube.local/mirrored:1", progress=lambda _: None)
        assert store.get(f"docker.io/library/busybox:{tag}").manifest_digest == digest
    finally:
        stop_registry(server.proc)


def test_run_mounts_cache_bind_and_secret(busybox_store: ImageStore, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "data").mkdir(parents=True)
    (ctx / "data" / "a.txt").write_text("from the context")
    (ctx / "data" / "private.txt").write_text("ignored")
    (ctx / ".dockerignore").write_text("data/private.txt\n")
    secret = f"token-{unique()}"
    (ctx / "Dockerfile").write_text(f"""\
FROM {BUSYBOX_IMAGE} AS builder
RUN mkdir /out && echo from the stage > /out/b.txt

FROM {BUSYBOX_IMAGE}
ARG STAMP
RUN --mount=type=cache,target=/root/.cache/pip \\
    ls /root/.cache/pip > /seen.txt && echo $STAMP > /root/.cache/pip/$STAMP
RUN --mount=type=bind,source=data,target=/mnt/data \\
    --mount=type=bind,from=builder,source=/out,target=/stage \\
    cat /mnt/data/a.txt /stage/b.txt > /from-binds.txt && \\
    if [ -e /mnt/data/private.txt ]; then echo leaked > /leak; fi && \\
    if touch /mnt/data/new 2>/dev/null; then echo writable > /bind-writable; fi
RUN --mount=type=bind,source=data,target=/rw,rw echo changed > /rw/a.txt && cat /rw/a.txt > /rw-seen.txt
RUN --mount=type=secret,id=token,required=true \\
    test "$(cat /run/secrets/token)" = "{secret}" && stat -c %a /run/secrets/token > /secret-mode.txt
""")
    tags = [f"pkube.local/{unique('mnt')}:{n}" for n in (1, 2)]
    with pytest.raises(BuildError, match=r"line 14: RUN: secret 'token' is required but was not given"):
        build(busybox_store, ctx, tag=tags[0], build_args={"STAMP": "one"}, progress=lambda _: None)
    for tag, stamp in zip(tags, ("one", "two")):
        build(busybox_store, ctx, tag=tag, build_args={"STAMP": stamp}, secrets={"token": secret.encode()},
              progress=lambda _: None)
    first, second = (_rootfs_files(busybox_store, t) for t in tags)
    assert first["/seen.txt"] == b"" and second["/seen.txt"] == b"one\n"  # the cache outlives the first build
    for files in (first, second):
        assert not any(p.startswith("/root/.cache") for p in files)  # ... and is in no layer
        assert files["/from-binds.txt"] == b"from the contextfrom the stage\n"
        assert "/leak" not in files and "/bind-writable" not in files  # .dockerignore'd, read-only
        assert files["/rw-seen.txt"] == b"changed\n"
        assert [p for p in files if p.split("/")[1] in ("mnt", "stage", "rw", "run")] == []  # no mount points
        assert files["/secret-mode.txt"] == b"400\n"
    assert (ctx / "data" / "a.txt").read_text() == "from the context"  # rw: writes thrown away
    assert secret.encode() not in _layer_bytes(busybox_store, tags[1])
    assert not SECRETS_DIR.is_dir() or list(SECRETS_DIR.iterdir()) == []  # the secret's tmpfs copy is gone
    [cache] = list((busybox_store.root / "cache-mounts").iterdir())
    assert sorted(os.listdir(cache)) == ["one", "two"]


def _build_sandboxes() -> tuple[list[str], list[str], list[str]]:
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    return ([n for n in os.listdir("/run/netns") if n.startswith("pkube-build-")],
            [n for n in os.listdir("/sys/class/net") if n.startswith("pkbuild")],
            [t for t in tables.split() if t.startswith("pkube-build-")])


def test_run_has_network_through_the_sandbox_gateway_unless_none(busybox_store: ImageStore, tmp_path: Path,
                                                                  files: FileServer) -> None:
    (files.root / "hello.txt").write_text("hello from the host")
    forward_before = IP_FORWARD.read_text()
    # A build killed in a RUN step leaves its sandbox behind; the next build's RUN removes it.
    killed = subprocess.run([sys.executable, "-c", "import os; from images import buildnet; "
                             "cm = buildnet.sandbox(); cm.__enter__(); os.kill(os.getpid(), 9)"], timeout=60)
    assert killed.returncode == -9
    assert all(len(found) == 1 for found in _build_sandboxes()), _build_sandboxes()
    fetch = (f"GW=$(ip route | awk '/^default/ {{print $3}}') && "
             f"wget -q -O /fetched.txt http://$GW:{files.port}/hello.txt")
    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nRUN {fetch}\n")
    tag = f"pkube.local/{unique('net')}:1"
    lines: list[str] = []
    build(busybox_store, tmp_path, tag=tag, progress=lines.append)
    built = _rootfs_files(busybox_store, tag)
    assert built["/fetched.txt"] == b"hello from the host"
    assert "/etc/resolv.conf" not in built and "/etc/hosts" not in built  # the step's, not the image's
    assert any(line.startswith("#2 DONE ") for line in lines)

    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nRUN --network=none {fetch}\n")
    with pytest.raises(BuildError, match="returned a non-zero code"):
        build(busybox_store, tmp_path, tag=tag, progress=lambda _: None)
    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nRUN --network=host true\n")
    with pytest.raises(BuildError, match=r"line 2: RUN: --network=host: expected one of default, none"):
        build(busybox_store, tmp_path, tag=tag, progress=lambda _: None)
    assert IP_FORWARD.read_text() == forward_before
    assert _build_sandboxes() == ([], [], [])


def test_add_url_healthcheck_and_onbuild(busybox_store: ImageStore, tmp_path: Path, files: FileServer) -> None:
    payload = f"release {unique()}\n".encode()
    (files.root / "release.txt").write_bytes(payload)
    url = f"http://127.0.0.1:{files.port}/release.txt"
    checksum = "sha256:" + hashlib.sha256(payload).hexdigest()
    base, child = (f"pkube.local/{unique(n)}:1" for n in ("onb", "child"))
    (tmp_path / "Dockerfile").write_text(f"""\
FROM {BUSYBOX_IMAGE}
ADD {url} /downloads/
ADD --checksum={checksum} --chmod=644 {url} /pinned.txt
HEALTHCHECK --interval=5s --timeout=2s --start-period=1m --retries=4 CMD wget -q -O- http://localhost/ || exit 1
ONBUILD RUN echo triggered > /onbuild.txt
ONBUILD ENV FROM_ONBUILD=yes
""")
    build(busybox_store, tmp_path, tag=base, progress=lambda _: None)
    cfg = busybox_store.config(base)["config"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
                                  "Interval": 5_000_000_000, "Timeout": 2_000_000_000,
                                  "StartPeriod": 60_000_000_000, "Retries": 4}
    assert cfg["OnBuild"] == ["RUN echo triggered > /onbuild.txt", "ENV FROM_ONBUILD=yes"]
    cid = unique()
    root = busybox_store.prepare_rootfs(base, cid)
    try:
        assert (root / "downloads/release.txt").read_bytes() == payload
        assert stat.S_IMODE(os.stat(root / "downloads/release.txt").st_mode) == 0o600  # Docker's mode for URLs
        assert stat.S_IMODE(os.stat(root / "pinned.txt").st_mode) == 0o644
        assert not (root / "onbuild.txt").exists()  # triggers run in the children only
    finally:
        busybox_store.release_rootfs(cid)

    (tmp_path / "Dockerfile").write_text(f'FROM {base}\nHEALTHCHECK NONE\nCMD ["true"]\n')
    lines: list[str] = []
    build(busybox_store, tmp_path, tag=child, progress=lines.append)
    assert "#2 [2/2] RUN echo triggered > /onbuild.txt" in lines
    cfg = busybox_store.config(child)["config"]
    assert cfg["Healthcheck"] == {"Test": ["NONE"]} and "OnBuild" not in cfg and "FROM_ONBUILD=yes" in cfg["Env"]
    assert _rootfs_files(busybox_store, child)["/onbuild.txt"] == b"triggered\n"

    hits = files.hits["/release.txt"]
    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nADD {url} /downloads/\n")
    lines.clear()
    build(busybox_store, tmp_path, tag=child, progress=lines.append)
    assert files.hits["/release.txt"] == hits + 1  # downloaded on every build: the content decides the cache
    assert "#2 CACHED" in lines


def test_heredocs_platform_args_and_variables_in_flags(busybox_store: ImageStore, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"""\
# syntax=docker/dockerfile:1.4
FROM {BUSYBOX_IMAGE}
ARG WHO=world
ARG TARGETOS TARGETARCH
RUN <<EOF
echo one > /one.txt
echo "$WHO" >> /one.txt
echo $TARGETOS/$TARGETARCH > /platform.txt
EOF
RUN cat > /two.txt <<'EOT'
literal $WHO
EOT
COPY <<greeting.txt <<-"raw.txt" /docs/
hello ${{WHO}}
greeting.txt
\tkept $WHO
\traw.txt
ARG UID=1234 MODE=600
COPY --chown=$UID:${{UID}} --chmod=$MODE <<owned.txt /owned.txt
mine
owned.txt
RUN --mount=type=cache,target=/cache/$TARGETARCH,id=arch-$TARGETARCH touch /cache/$TARGETARCH/ok
EXPOSE 8000-8002/udp
""")
    tag = f"pkube.local/{unique('heredoc')}:1"
    lines: list[str] = []
    build(busybox_store, tmp_path, tag=tag, build_args={"WHO": "you"}, progress=lines.append)
    assert "#2 [2/6] RUN <<EOF" in lines  # one line per step, without the body
    files = _rootfs_files(busybox_store, tag)
    assert files["/one.txt"] == b"one\nyou\n" and files["/two.txt"] == b"literal $WHO\n"
    assert files["/platform.txt"] == f"linux/{host_arch()}\n".encode()  # BuildKit's automatic platform ARGs
    assert files["/docs/greeting.txt"] == b"hello you\n" and files["/docs/raw.txt"] == b"kept $WHO\n"
    cid = unique()
    root = busybox_store.prepare_rootfs(tag, cid)
    try:
        st = os.stat(root / "owned.txt")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 1234, 0o600)
    finally:
        busybox_store.release_rootfs(cid)
    assert (busybox_store.root / "cache-mounts").is_dir() and "/cache" not in files
    assert busybox_store.config(tag)["config"]["ExposedPorts"] == {f"{p}/udp": {} for p in (8000, 8001, 8002)}
    history = [h["created_by"] for h in busybox_store.config(tag)["history"]]
    assert any(h.startswith("RUN <<EOF\necho one > /one.txt\necho \"$WHO\" >> /one.txt\n") for h in history)


@pytest.mark.parametrize("dockerfile, message", [
    ("ADD --checksum=sha256:{zero} {url}/release.txt /x\n", r"line 2: ADD: checksum of .* is sha256:"),
    ("ADD {url}/missing.txt /x\n", r"line 2: ADD: cannot download .*/missing.txt: HTTP 404"),
    ("HEALTHCHECK --interval=fast CMD true\n", r"line 2: HEALTHCHECK: --interval: time: invalid duration"),
    ("HEALTHCHECK echo\n", r"line 2: HEALTHCHECK: expected HEALTHCHECK \[OPTIONS\] CMD"),
    ("ONBUILD FROM scratch\n", r"line 2: ONBUILD: FROM isn't allowed as an ONBUILD trigger"),
    ("RUN --mount=type=ssh true\n", r"line 2: RUN: --mount: unsupported type 'ssh'"),
    ("RUN --mount=type=cache true\n", r"line 2: RUN: --mount=type=cache needs target=PATH"),
    ("RUN --mount=type=bind,target=/x,color=red true\n", r"line 2: RUN: --mount: unknown option 'color'"),
    ("RUN --mount=type=bind,from=pkube.local/no:1,target=/x true\n",
     r"line 2: RUN: --mount from=pkube.local/no:1: no such stage, and image 'pkube.local/no:1' is not in the local"),
    ("COPY --from=pkube.local/no:1 /x /x\n", r"line 2: COPY: --from=pkube.local/no:1: no such stage, and image"),
])
def test_bad_new_instructions_fail_clearly(busybox_store: ImageStore, tmp_path: Path, files: FileServer,
                                          dockerfile: str, message: str) -> None:
    (files.root / "release.txt").write_text("x")
    url = f"http://127.0.0.1:{files.port}"
    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\n" + dockerfile.format(url=url, zero="0" * 64))
    with pytest.raises(BuildError, match=message):
        build(busybox_store, tmp_path, tag=f"pkube.local/{unique('bad')}:1", progress=lambda _: None)
    assert [p for p in os.listdir(busybox_store.layout.tmp) if p.startswith(("build-", "add-"))] == []


def test_pkctl_image_build_secret_and_network_flags(busybox_store: ImageStore, tmp_path: Path,
                                                    files: FileServer) -> None:
    from tests.images.test_cli import pkctl
    root = tmp_path / "store"
    ensure_busybox(ImageStore(root))
    (tmp_path / "token").write_text("from-a-file")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\n"
                                    "RUN --mount=type=secret,id=token,required wc -c < /run/secrets/token > /len\n"
                                    f"RUN wget -q -O /dev/null http://$(ip route | awk '/^default/ {{print $3}}'):"
                                    f"{files.port}/ && echo online > /net || echo offline > /net\n")
    r = pkctl("image", "build", "--root", root, "-t", "pkube.local/flags:1", "--secret",
              f"id=token,src={tmp_path / 'token'}", "--network", "none", "--label", "team=images",
              "--platform", f"linux/{host_arch()}", "--progress", "plain", ctx)
    assert r.returncode == 0, r.stdout + r.stderr
    img = ImageStore(root)
    assert img.config("pkube.local/flags:1")["config"]["Labels"] == {"team": "images"}
    assert _rootfs_files(img, "pkube.local/flags:1")["/net"] == b"offline\n"  # --network none: every RUN
    assert _rootfs_files(img, "pkube.local/flags:1")["/len"].strip() == b"11"
    assert b"from-a-file" not in _layer_bytes(img, "pkube.local/flags:1")

    for bad, message in ((["--secret", "token"], "error: invalid --secret 'token': expected id=ID"),
                         (["--secret", "id=nosuchvar_x1"], "error: --secret id=nosuchvar_x1: environment variable "
                                                            "nosuchvar_x1 is not set"),
                         (["--platform", "linux/s390x"], "error: --platform=linux/s390x: only the host platform")):
        r = pkctl("image", "build", "--root", root, *bad, ctx)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
