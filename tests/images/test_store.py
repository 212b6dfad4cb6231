"""The name index under concurrent writers, and layer sharing between images."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from images.store import ImageStore
from tests.images.layers import make_image

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]


def test_concurrent_taggers_in_separate_processes_lose_no_names(store: ImageStore) -> None:
    make_image(store, "pkube.local/base:1", [[("f", "file", "x")]])
    script = ("import sys; from images.store import ImageStore; s = ImageStore(sys.argv[1]); "
              "[s.tag('pkube.local/base:1', f'pkube.local/{sys.argv[2]}:{i}') for i in range(25)]")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(store.root), name], cwd=ROOT)
             for name in ("left", "right", "middle")]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    names = {img.name for img in store.list()}
    assert len(names) == 1 + 75
    assert {f"pkube.local/{n}:{i}" for n in ("left", "right", "middle") for i in range(25)} <= names
    assert not [f for f in os.listdir(store.root) if f.endswith(".tmp")]


def test_a_shared_layer_is_unpacked_once(store: ImageStore) -> None:
    base = [("etc", "dir", ""), ("etc/base", "file", "shared")]
    a = make_image(store, "pkube.local/a:1", [base, [("a", "file", "a")]])
    b = make_image(store, "pkube.local/b:1", [base, [("b", "file", "b")]])
    assert a.layers[0] == b.layers[0]
    assert len(os.listdir(store.layout.layers)) == 3
