"""Fixtures for image-store tests: stores in temp dirs, torn down with every mount they made."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from images import rootfs
from images.busybox import ensure_busybox
from images.store import ImageStore
from tests.images.registry_fixture import registry_server  # noqa: F401  (fixture)


def _teardown(root: Path) -> None:
    # Unmount anything still mounted below root (deepest first), whatever the test left behind.
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(str(root) + "/")), key=len, reverse=True):
        rootfs.unmount(Path(point))
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def store() -> Iterator[ImageStore]:
    root = Path(tempfile.mkdtemp(prefix="pkt-images-"))
    try:
        yield ImageStore(root / "store")
    finally:
        _teardown(root)


@pytest.fixture(scope="session")
def busybox_store() -> Iterator[ImageStore]:
    """One store with pkube.local/busybox:latest built, shared by the tests that only read it."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = Path(tempfile.mkdtemp(prefix="pkt-images-bb-"))
    try:
        s = ImageStore(root / "store")
        ensure_busybox(s)
        yield s
    finally:
        _teardown(root)
