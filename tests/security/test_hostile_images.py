"""Hostile images against the host: /etc/passwd and /etc/group that link to host files, /dev/zero or a FIFO, or
are huge; layers and ADD archives that write through a symlink. Each test builds the image on the fly and runs
it through the real runtime (runc + conmon) or builder, and asserts a prompt, clear error or the image's own
file, and an untouched host."""
from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from images.errors import BuildError, ImageError, UnsafeArchive
from images.store import ImageStore
from kubelet.runtime.interface import ContainerConfig, InvalidConfig, SandboxConfig
from kubelet.runtime.runc import RuncRuntime
from tests.images.layers import Entry, add_layer, make_tar
from tests.support.runtime import busybox, image_store, runtime  # noqa: F401  (fixtures)
from tests.util import unique

pytestmark = pytest.mark.root

PROMPT = 20.0  # seconds: a create or build that takes longer is hanging
MARKER_USER = "marker:x:4242:4243:marker:/:/bin/sh\n"


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A host directory that a hostile image points at: its files must never be read or written by the image."""
    d = Path(tempfile.mkdtemp(prefix="pkt-host-"))
    (d / "passwd").write_text(MARKER_USER)
    try:
        yield d
    finally:
        for p in sorted(d.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
        d.rmdir()


def hostile_image(store: ImageStore, base: str, entries: list[Entry], user: str = "marker") -> str:
    """busybox with one more layer holding `entries`, whose config runs as `user`."""
    bb = store.get(base)
    config = {"config": {"User": user, "Env": ["PATH=/bin"], "Cmd": ["sleep", "3600"]}}
    name = f"pkube.local/{unique('hostile')}:latest"
    store.commit(config, [*bb.layers, add_layer(store, entries)], name)
    return name


@pytest.fixture
async def sandbox(runtime: RuncRuntime) -> str:  # noqa: F811
    return await runtime.run_sandbox(SandboxConfig(name="pod", namespace="default", uid=unique("uid")))


async def create(runtime: RuncRuntime, sandbox: str, image: str) -> str:  # noqa: F811
    return await asyncio.wait_for(runtime.create_container(sandbox, ContainerConfig(name="c", image=image)), PROMPT)


@pytest.mark.parametrize("entries, message", [
    ([("etc/passwd", "symlink", "/dev/zero")], "unable to find user marker"),
    ([("etc/passwd", "fifo", "")], "/etc/passwd is a FIFO"),
    ([("run", "dir", ""), ("run/pipe", "fifo", ""), ("etc/group", "symlink", "/run/pipe")], "/etc/group is a FIFO"),
    ([("etc/passwd", "file", MARKER_USER * 40_000)], "/etc/passwd is larger than 1048576 bytes"),
    ([("etc/passwd", "symlink", "/etc/passwd")], "/etc/passwd is a symlink loop"),
    ([("etc/passwd", "dir", "")], "/etc/passwd is a directory"),
], ids=["dev-zero", "fifo", "group-link-to-fifo", "huge", "loop", "directory"])
async def test_hostile_passwd_or_group_fails_promptly_with_a_config_error(
        runtime: RuncRuntime, sandbox: str, image_store: ImageStore, busybox: str,  # noqa: F811
        entries: list[Entry], message: str) -> None:
    image = hostile_image(image_store, busybox, entries)
    with pytest.raises(InvalidConfig) as err:
        await create(runtime, sandbox, image)
    assert message in str(err.value)
    assert not runtime.containers.ids(sandbox), "a failed create left a container behind"


@pytest.mark.parametrize("link", ["/etc/hostname", "../../../../../etc/hostname", "../usr/share/passwd"])
async def test_passwd_links_resolve_inside_the_image(runtime: RuncRuntime, sandbox: str, image_store: ImageStore,
                                                     busybox: str, link: str) -> None:  # noqa: F811
    """Absolute links and `..` resolve as in the container: the IMAGE's /etc/hostname (which holds the user), never
    the host's (which does not)."""
    image = hostile_image(image_store, busybox, [
        ("etc/hostname", "file", MARKER_USER), ("usr/share/passwd", "file", MARKER_USER),
        ("etc/passwd", "symlink", link)])
    cid = await create(runtime, sandbox, image)
    user = runtime.containers.spec(cid)["process"]["user"]
    assert (user["uid"], user["gid"]) == (4242, 4243)


async def test_etc_linked_to_a_host_directory_is_not_read(runtime: RuncRuntime, sandbox: str,
                                                          image_store: ImageStore, busybox: str,  # noqa: F811
                                                          host_dir: Path) -> None:
    """/etc -> a host directory holding a passwd with the user: the host's file must not be used."""
    image = hostile_image(image_store, busybox, [("etc", "symlink", str(host_dir))])
    with pytest.raises(InvalidConfig, match="unable to find user marker"):
        await create(runtime, sandbox, image)


def build(store: ImageStore, context: Path, dockerfile: str) -> None:
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    store.build(context, tag=f"pkube.local/{unique('built')}:latest", progress=lambda _line: None)


async def test_build_user_does_not_read_the_hosts_files(image_store: ImageStore, busybox: str,  # noqa: F811
                                                        host_dir: Path, tmp_path: Path) -> None:
    base = hostile_image(image_store, busybox, [("etc", "symlink", str(host_dir))], user="")
    with pytest.raises(BuildError, match="user 'marker' not found in the image's /etc/passwd"):
        await asyncio.wait_for(asyncio.to_thread(
            build, image_store, tmp_path / "ctx", f"FROM {base}\nUSER marker\nRUN true\n"), PROMPT)


async def test_build_user_with_a_fifo_passwd_fails_promptly(image_store: ImageStore, busybox: str,  # noqa: F811
                                                            tmp_path: Path) -> None:
    base = hostile_image(image_store, busybox, [("etc/passwd", "fifo", "")], user="")
    with pytest.raises(BuildError, match="/etc/passwd is a FIFO"):
        await asyncio.wait_for(asyncio.to_thread(
            build, image_store, tmp_path / "ctx", f"FROM {base}\nUSER marker\nRUN true\n"), PROMPT)


def test_layer_cannot_write_through_its_own_symlink(image_store: ImageStore, host_dir: Path) -> None:  # noqa: F811
    for entries in ([("escape", "symlink", str(host_dir)), ("escape/pwned", "file", "x")],
                    [("escape", "symlink", "../../../../../../../.." + str(host_dir)), ("escape/pwned", "file", "x")]):
        with pytest.raises(ImageError):
            image_store.commit({"config": {}}, [add_layer(image_store, entries)], None)
    assert sorted(p.name for p in host_dir.iterdir()) == ["passwd"]
    assert (host_dir / "passwd").read_text() == MARKER_USER


def test_layer_hardlink_to_a_symlink_links_the_symlink_not_the_host_file(image_store: ImageStore,  # noqa: F811
                                                                         host_dir: Path) -> None:
    img = image_store.commit({"config": {}}, [add_layer(image_store, [
        ("link", "symlink", str(host_dir / "passwd")), ("hard", "hardlink", "link")])], None)
    layer = image_store.layer_dirs(img.layers)[0]
    assert (layer / "hard").is_symlink()
    assert (host_dir / "passwd").stat().st_nlink == 1


async def test_build_add_tar_cannot_write_through_an_image_symlink(image_store: ImageStore, busybox: str,  # noqa: F811
                                                                   host_dir: Path, tmp_path: Path) -> None:
    base = hostile_image(image_store, busybox, [("app", "symlink", str(host_dir))], user="")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "evil.tar").write_bytes(make_tar([("app/pwned", "file", "x"), ("app/passwd", "file", "overwritten")]))
    with pytest.raises((BuildError, UnsafeArchive)):
        await asyncio.wait_for(asyncio.to_thread(build, image_store, ctx, f"FROM {base}\nADD evil.tar /\n"), PROMPT)
    assert sorted(p.name for p in host_dir.iterdir()) == ["passwd"]
    assert (host_dir / "passwd").read_text() == MARKER_USER

