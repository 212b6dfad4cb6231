"""An image store with the bundled busybox, and a real runc runtime under unique names that is torn down and
checked for leftovers after each test (fixtures imported by the runtime and security tests' conftest/modules)."""
from __future__ import annotations

import random
import shutil
import tempfile
import uuid
from pathlib import Path
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, AsyncIterator, Iterator

import pytest

from images.busybox import ensure_busybox
from images.store import ImageStore
from kubelet.runtime.runc import RuncRuntime, RuntimeConfig
from tests.support.leftovers import leftovers


@pytest.fixture(scope="session")
def image_store() -> Iterator[ImageStore]:
    d = tempfile.mkdtemp(prefix="pkt-images-")
    store = ImageStore(Path(d))
    try:
        yield store
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox(image_store: ImageStore) -> str:
    return ensure_busybox(image_store)


def runtime_config(state_dir: Path) -> RuntimeConfig:
    tag = uuid.uuid4().hex[:6]
    # a random /24 in 10.200.0.0/13: unlikely to collide with a parallel test's bridge
    cidr = f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24"
    return RuntimeConfig(state_dir=state_dir, pod_cidr=cidr, bridge=f"pkt-br{tag}", nat_table=f"pkube-t-{tag}",
                         netns_prefix=f"pkt{tag}-", veth_prefix=f"pt{tag}", cgroup_parent=f"pkube-t-{tag}",
                         enable_forwarding=False)


@asynccontextmanager
async def node_runtime(image_store: ImageStore, **config: Any) -> AsyncIterator[RuncRuntime]:
    """A runtime whose node is set up, and torn down and checked for leftovers at the end; `config` overrides
    RuntimeConfig fields."""
    state = Path(tempfile.mkdtemp(prefix="pkt-rt-"))
    rt = RuncRuntime(replace(runtime_config(state), **config), image_store)
    try:
        await rt.ensure_node()
        yield rt
    finally:
        try:
            await rt.destroy_node()
            left = await leftovers(rt, mount_markers=(str(image_store.root),))
        finally:
            shutil.rmtree(state, ignore_errors=True)
        assert not left, f"runtime left resources behind: {left}"


@pytest.fixture
async def runtime(image_store: ImageStore, busybox: str) -> AsyncIterator[RuncRuntime]:
    async with node_runtime(image_store) as rt:
        yield rt
