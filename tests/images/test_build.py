"""Dockerfile builds with real runc RUN steps over overlay mounts."""
from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from images.build import build
from images.busybox import BUSYBOX_IMAGE
from images.errors import BuildError
from images.store import ImageStore
from tests.util import unique

pytestmark = pytest.mark.root

TWO_STAGE = f"""\
ARG BASE={BUSYBOX_IMAGE}
FROM --platform=$BUILDPLATFORM $BASE AS builder
ARG GREETING=hello
WORKDIR /src
COPY app.sh ./
RUN echo "$GREETING from the builder" > /src/out.txt && chmod 755 app.sh

FROM ${{BASE}}
ENV APP_HOME=/opt/app \\
    MODE="production mode"
WORKDIR $APP_HOME
COPY --from=builder /src/out.txt /src/app.sh ./
COPY --chown=nobody:nobody conf/ conf/
RUN rm /etc/group && mkdir -p /var/data && chown nobody /var/data
LABEL org.example.team="images" version=1
EXPOSE 8080 53/udp
VOLUME /var/data
USER nobody
ENTRYPOINT ["/opt/app/app.sh"]
CMD ["--serve"]
"""


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "conf").mkdir(parents=True)
    (ctx / "app.sh").write_text("#!/bin/sh\necho app \"$@\"\n")
    (ctx / "conf" / "app.conf").write_text("port=8080\n")
    (ctx / "conf" / "secret.key").write_text("do not ship")
    (ctx / ".dockerignore").write_text("# keep secrets out\n**/*.key\n")
    (ctx / "Dockerfile").write_text(TWO_STAGE)
    return ctx


def test_two_stage_build_produces_config_and_files(busybox_store: ImageStore, context: Path) -> None:
    tag = f"pkube.local/{unique('app')}:1"
    lines: list[str] = []
    img = build(busybox_store, context, tag=tag, build_args={"GREETING": "hi"}, progress=lines.append)
    assert lines[0] == "#1 [builder 1/4] FROM pkube.local/busybox:latest"  # Docker's (BuildKit's) plain progress
    assert "#4 [builder 4/4] RUN echo \"$GREETING from the builder\" > /src/out.txt && chmod 755 app.sh" in lines
    assert "#5 [stage-1 1/5] FROM pkube.local/busybox:latest" in lines
    assert lines[-1].startswith("[+] Building ") and lines[-1].endswith(" (10/10) FINISHED")
    cfg = busybox_store.config(tag)["config"]
    assert cfg["Entrypoint"] == ["/opt/app/app.sh"] and cfg["Cmd"] == ["--serve"]
    assert cfg["WorkingDir"] == "/opt/app" and cfg["User"] == "nobody"
    assert "APP_HOME=/opt/app" in cfg["Env"] and "MODE=production mode" in cfg["Env"]
    assert not any(e.startswith("GREETING=") for e in cfg["Env"])  # ARGs are not persisted
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/var/data": {}}
    assert cfg["Labels"] == {"org.example.team": "images", "version": "1"}
    base_layers = len(busybox_store.get(BUSYBOX_IMAGE).layers)
    assert len(img.layers) == base_layers + 4  # WORKDIR, COPY --from, COPY conf, RUN

    cid = unique()
    root = busybox_store.prepare_rootfs(tag, cid)
    try:
        assert (root / "opt/app/out.txt").read_text() == "hi from the builder\n"
        assert stat.S_IMODE(os.stat(root / "opt/app/app.sh").st_mode) == 0o755
        conf = root / "opt/app/conf"
        assert sorted(os.listdir(conf)) == ["app.conf"]  # .dockerignore kept the key out
        assert (os.stat(conf / "app.conf").st_uid, os.stat(conf).st_uid) == (65534, 65534)
        assert not os.path.lexists(root / "etc/group")  # deleted by RUN in an upper layer
        assert os.stat(root / "var/data").st_uid == 65534
        assert not (root / "src").exists()  # the builder stage is not in the final image
    finally:
        busybox_store.release_rootfs(cid)


def test_rebuild_with_nothing_changed_hits_the_cache(busybox_store: ImageStore, context: Path) -> None:
    first = build(busybox_store, context, tag=f"pkube.local/{unique('c')}:1", progress=lambda _: None)
    lines: list[str] = []
    second = build(busybox_store, context, tag=f"pkube.local/{unique('c')}:2", progress=lines.append)
    assert second.manifest_digest == first.manifest_digest
    assert sum(line.endswith(" CACHED") for line in lines) == 7
    assert not any("from the builder" in line for line in lines if "] RUN " not in line)

    (context / "conf" / "app.conf").write_text("port=9090\n")  # a changed input invalidates from there on
    lines.clear()
    third = build(busybox_store, context, tag=f"pkube.local/{unique('c')}:3", progress=lines.append)
    assert third.manifest_digest != first.manifest_digest
    assert sum(line.endswith(" CACHED") for line in lines) == 5
    # A changed file that .dockerignore excludes does not invalidate anything.
    (context / "conf" / "secret.key").write_text("rotated")
    fourth = build(busybox_store, context, tag=f"pkube.local/{unique('c')}:4", progress=lambda _: None)
    assert fourth.manifest_digest == third.manifest_digest


def test_add_extracts_local_tars_and_copy_keeps_files(busybox_store: ImageStore, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("www/index.html")
        data = b"<h1>hi</h1>"
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (ctx / "site.tar.gz").write_bytes(buf.getvalue())
    (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nADD site.tar.gz /srv/\n"
                                    "COPY --chmod=600 site.tar.gz /copied/\n")
    tag = f"pkube.local/{unique('add')}:1"
    build(busybox_store, ctx, tag=tag, progress=lambda _: None)
    cid = unique()
    root = busybox_store.prepare_rootfs(tag, cid)
    try:
        assert (root / "srv/www/index.html").read_bytes() == b"<h1>hi</h1>"
        assert (root / "copied/site.tar.gz").read_bytes() == buf.getvalue()
        assert stat.S_IMODE(os.stat(root / "copied/site.tar.gz").st_mode) == 0o600
    finally:
        busybox_store.release_rootfs(cid)


@pytest.mark.parametrize("dockerfile, message", [
    (f"FROM {BUSYBOX_IMAGE}\nRUN true\nHEALTH CMD true\n", r"line 3: unsupported instruction 'HEALTH'"),
    ("RUN true\n", r"line 1: RUN: a Dockerfile must begin with FROM"),
    ("FROM pkube.local/nosuch:1\n", r"line 1: FROM: base image 'pkube.local/nosuch:1' is not in the local store"),
    (f"FROM {BUSYBOX_IMAGE}\nCOPY missing.txt /\n", r"line 2: source 'missing.txt' not found"),
    (f"FROM {BUSYBOX_IMAGE}\nCOPY ../etc/passwd /\n", r"outside the build context"),
    (f"FROM {BUSYBOX_IMAGE}\nCOPY hostetc/passwd /\n", r"'hostetc/passwd' is outside the build context"),
    (f"FROM {BUSYBOX_IMAGE}\nRUN echo failing step && exit 3\n", r"returned a non-zero code: 3"),
    (f"FROM {BUSYBOX_IMAGE}\nUSER ghost\nRUN true\n", r"user 'ghost' not found"),
    (f"FROM {BUSYBOX_IMAGE}\nEXPOSE 99999\n", r"line 2: EXPOSE: invalid port '99999'"),
    (f"FROM {BUSYBOX_IMAGE}\nCOPY --chmod=rwx Dockerfile /\n", r"line 2: COPY: invalid --chmod=rwx"),
    (f"FROM --platform=linux/s390x {BUSYBOX_IMAGE}\n", r"line 1: FROM: --platform=linux/s390x: only the host"),
])
def test_bad_dockerfiles_fail_clearly_and_leave_nothing(busybox_store: ImageStore, tmp_path: Path,
                                                        dockerfile: str, message: str) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "hostetc").symlink_to("/etc")
    names = set(busybox_store.layout.names())
    with pytest.raises(BuildError, match=message):
        build(busybox_store, tmp_path, tag=f"pkube.local/{unique('bad')}:1", progress=lambda _: None)
    assert set(busybox_store.layout.names()) == names
    assert [p for p in os.listdir(busybox_store.layout.tmp) if p.startswith("build-")] == []
    with open("/proc/self/mountinfo") as f:
        assert str(busybox_store.root) not in f.read()


def test_copy_cannot_write_through_an_image_symlink_to_the_host(busybox_store: ImageStore, tmp_path: Path) -> None:
    victim = tmp_path / "host-dir"
    victim.mkdir()
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\nRUN ln -s {victim} /trap\nCOPY f.txt /trap/\n")
    tag = f"pkube.local/{unique('trap')}:1"
    build(busybox_store, tmp_path, tag=tag, progress=lambda _: None)
    assert os.listdir(victim) == []  # the symlink resolved inside the image, not on the host
    cid = unique()
    root = busybox_store.prepare_rootfs(tag, cid)
    try:
        assert (root / str(victim).lstrip("/") / "f.txt").read_text() == "x"
    finally:
        busybox_store.release_rootfs(cid)


def test_target_builds_only_up_to_that_stage(busybox_store: ImageStore, context: Path) -> None:
    lines: list[str] = []
    tag = f"pkube.local/{unique('tgt')}:1"
    build(busybox_store, context, tag=tag, target="builder", progress=lines.append)
    assert not any("[stage-1 " in line for line in lines)
    assert busybox_store.config(tag)["config"]["WorkingDir"] == "/src"
    cid = unique()
    root = busybox_store.prepare_rootfs(tag, cid)
    try:
        assert (root / "src/out.txt").read_text() == "hello from the builder\n"  # the ARG default
    finally:
        busybox_store.release_rootfs(cid)
    with pytest.raises(BuildError, match="target stage 'nosuch' not found"):
        build(busybox_store, context, target="nosuch", progress=lambda _: None)


@pytest.mark.parametrize("dest", ["/..", "/tmp/../..", "../../../../"])
def test_copy_destination_with_dotdot_stays_in_the_image(busybox_store: ImageStore, tmp_path: Path,
                                                         dest: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("x")
    (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nWORKDIR /a/b\nCOPY f.txt {dest}\n")
    before = sorted(os.listdir(tmp_path))
    tag = f"pkube.local/{unique('dots')}:1"
    build(busybox_store, ctx, tag=tag, progress=lambda _: None)
    assert sorted(os.listdir(tmp_path)) == before
    cid = unique()
    root = busybox_store.prepare_rootfs(tag, cid)
    try:
        assert (root / "f.txt").read_text() == "x"  # `..` stops at the image's root, as in Docker
        assert (root / "bin/sh").exists()
    finally:
        busybox_store.release_rootfs(cid)
