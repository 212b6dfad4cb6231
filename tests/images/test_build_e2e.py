"""e2e: the Flask-style docs example (docs-examples/flask-watchlist/Dockerfile: syntax directive,
FROM --platform=$BUILDPLATFORM, legacy ENV, `RUN --mount=type=cache,target=/root/.cache/pip pip3 install -r
requirements.txt`, an init step) built with `pkctl image build` on a real Python base, then run under runc
and answering on its port.

The base is this host's own Python as pkube.local/python-local:3.X and the requirements come from a PEP 503
index served by this test (tests/support/python_image.py); only the base image and the server program
(minihttp, a WSGI server with gunicorn's command line) differ from the model Dockerfile.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from images.store import ImageStore
from kubelet.runtime.interface import ContainerConfig, SandboxConfig
from tests.runtime.test_network import fetch
from tests.support.python_image import (SimpleIndex, ensure_python_image, host_python, index_host, watchlist_app,
                                        watchlist_project)
from tests.support.runtime import node_runtime
from tests.util import unique

pytestmark = pytest.mark.root

MODEL = Path("/work/shared/docs-examples/flask-watchlist/Dockerfile")
if not MODEL.is_file():
    MODEL = Path(__file__).resolve().parents[3] / "shared" / "docs-examples" / "flask-watchlist" / "Dockerfile"


def pkctl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pkctl.main", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SimpleIndex]:
    server = SimpleIndex(tmp_path / "index")
    try:
        yield server
    finally:
        server.close()


@pytest.mark.skipif(host_python() is None or not MODEL.is_file(),
                    reason="needs the host's /usr/bin/python3 with Debian's pip (python3-pip) and the docs example")
async def test_flask_style_app_builds_caches_and_serves(tmp_path: Path, index: SimpleIndex) -> None:
    root = tmp_path / "home" / "images"
    store = ImageStore(root)
    base = ensure_python_image(store, tmp_path)
    app = tmp_path / "app"
    watchlist_project(app, MODEL, base, index)
    tag = f"pkube.local/{unique('watchlist')}:1"
    r = pkctl("image", "build", "--root", root, "-t", tag, app)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"#1 [1/6] FROM {base}\n" in out
    assert "#4 [4/6] RUN --mount=type=cache,target=/root/.cache/pip pip3 install -r requirements.txt\n" in out
    assert "Successfully installed minihttp-0.1 watchlist-dep-1.0" in out, out
    assert "#6 [6/6] RUN python init_db.py\n" in out and "initialised 3 movies" in out
    assert f"Successfully tagged {tag}" in out
    wheel = "/wheels/watchlist_dep-1.0-py3-none-any.whl"
    assert index.hits[wheel] == 1

    # New code: the requirements layer comes from the build cache, the code and init steps run again.
    (app / "app.py").write_text(watchlist_app("second"))
    r = pkctl("image", "build", "--root", root, "-t", tag, app)
    assert r.returncode == 0, r.stderr
    assert "#4 CACHED\n" in r.stdout and "#5 DONE " in r.stdout and "#6 DONE " in r.stdout
    # New requirements: pip runs again and takes the first packages from its cache mount.
    (app / "requirements.txt").write_text((app / "requirements.txt").read_text() + "extras==2.0\n")
    r = pkctl("image", "build", "--root", root, "-t", tag, app)
    assert r.returncode == 0, r.stderr
    assert f"Using cached http://{index_host()}:{index.port}{wheel}" in r.stdout, r.stdout
    assert "Successfully installed extras-2.0 minihttp-0.1 watchlist-dep-1.0" in r.stdout
    assert index.hits[wheel] == 1 and index.hits["/wheels/extras-2.0-py3-none-any.whl"] == 1
    assert r.stdout.rstrip().splitlines()[-2].startswith("[+] Building ")

    config = store.config(tag)["config"]
    assert config["WorkingDir"] == "/app" and config["ExposedPorts"] == {"5000/tcp": {}}
    assert {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"} <= set(config["Env"])
    assert config["Cmd"] == ["minihttp", "-w", "2", "-b", "0.0.0.0:5000", "app:app"]
    async with node_runtime(store) as rt:
        sid = await rt.run_sandbox(SandboxConfig(name="watchlist", namespace="default", uid=unique("uid")))
        cid = await rt.create_container(sid, ContainerConfig(name="web", image=tag))
        await rt.start_container(cid)
        page = await fetch(rt, cid, "http://127.0.0.1:5000/")
        assert page == "watchlist 1.0: Alien, Brazil, Heat (second)\n"
