"""e2e: a Flask-style app built with `pkctl image build` from a Dockerfile of the shape of
docs-examples/flask-watchlist (syntax directive, FROM --platform=$BUILDPLATFORM, legacy ENV, a
`RUN --mount=type=cache,target=/root/.cache/pip pip3 install -r requirements.txt` against a package index
served from this host, an init step), then run under runc and answering on its port.

No Python base image exists here (and no network beyond this machine), so the base is busybox with a
stand-in `pip3` (a shell script with pip's cache behaviour: a package in /root/.cache/pip is not downloaded
again) and busybox httpd in gunicorn's place; everything else is the model Dockerfile as written.
"""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterator

import pytest

from images.build import build
from images.busybox import ensure_busybox
from images.store import ImageStore
from kubelet.runtime.interface import ContainerConfig, SandboxConfig
from tests.images.test_build_docker import FileServer
from tests.runtime.test_network import fetch
from tests.support.runtime import node_runtime
from tests.util import unique

pytestmark = pytest.mark.root

MODEL = """\
# syntax=docker/dockerfile:1.4
FROM --platform=$BUILDPLATFORM {base}

# set the working directory
WORKDIR /app

# set environmental variables
ENV PYTHONDONTWRITEBYTECODE 1
ENV PYTHONUNBUFFERED 1

# install the requirements
COPY requirements.txt /app
RUN --mount=type=cache,target=/root/.cache/pip \\
    pip3 install -r requirements.txt

# copy the code to the container
COPY . .

# initialize the database (create DB, tables, populate)
RUN sh init_db.sh

# expose
EXPOSE 5000/tcp

# entrypoint command
CMD ["httpd", "-f", "-p", "5000", "-h", "/app/www"]
"""

PIP3 = """#!/bin/sh
# pip's stand-in: `pip3 install -r FILE` from the index on the build host (the sandbox's gateway), cached
set -e
[ "$1 $2" = "install -r" ] || { echo "usage: pip3 install -r FILE" >&2; exit 2; }
GW=$(ip route | awk '/^default/ {print $3}')
INDEX=${PIP_INDEX_URL:-http://$GW:$PIP_INDEX_PORT/simple}
mkdir -p /root/.cache/pip /usr/local/lib/site
while read -r req; do
  [ -n "$req" ] || continue
  f="$(echo "$req" | sed 's/==/-/').tar"
  if [ -f "/root/.cache/pip/$f" ]; then
    echo "Using cached $f"
  else
    echo "Downloading $INDEX/$f"
    wget -q -O "/root/.cache/pip/$f.part" "$INDEX/$f" && mv "/root/.cache/pip/$f.part" "/root/.cache/pip/$f"
  fi
  tar -xf "/root/.cache/pip/$f" -C /usr/local/lib/site
  echo "Successfully installed $req"
done < "$3"
"""

INIT_DB = """mkdir -p /app/www
echo "watchlist $(cat /usr/local/lib/site/watchlist/VERSION): $(wc -l < /usr/local/lib/site/watchlist/items.txt) \
items, $(cat /app/banner.txt)" > /app/www/index.html
"""


def package(path: Path, files: dict[str, str]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    path.write_bytes(buf.getvalue())


def pkctl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pkctl.main", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[FileServer]:
    (tmp_path / "www" / "simple").mkdir(parents=True)
    server = FileServer(tmp_path / "www", "0.0.0.0")  # every address: RUN steps reach it through their gateway
    package(server.root / "simple/watchlist-1.0.tar", {"watchlist/VERSION": "1.0", "watchlist/items.txt": "a\nb\nc\n"})
    package(server.root / "simple/extras-2.0.tar", {"extras/VERSION": "2.0"})
    try:
        yield server
    finally:
        server.close()


async def test_flask_style_app_builds_caches_and_serves(tmp_path: Path, index: FileServer) -> None:
    root = tmp_path / "home" / "images"
    store = ImageStore(root)
    base_ctx, app = tmp_path / "base", tmp_path / "app"
    base_ctx.mkdir()
    app.mkdir()
    (base_ctx / "pip3").write_text(PIP3)
    (base_ctx / "Dockerfile").write_text(f"FROM {ensure_busybox(store)}\nARG INDEX_PORT\n"
                                         "ENV PIP_INDEX_PORT=$INDEX_PORT\nCOPY --chmod=755 pip3 /usr/local/bin/\n")
    base = f"pkube.local/{unique('py')}:3.10-alpine"
    build(store, base_ctx, tag=base, build_args={"INDEX_PORT": str(index.port)}, progress=lambda _: None)

    (app / "Dockerfile").write_text(MODEL.format(base=base))
    (app / "requirements.txt").write_text("watchlist==1.0\n")
    (app / "init_db.sh").write_text(INIT_DB)
    (app / "banner.txt").write_text("first")
    tag = "pkube.local/watchlist:1"
    r = pkctl("image", "build", "--root", root, "-t", tag, app)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"#1 [1/6] FROM {base}\n" in out
    assert "#4 [4/6] RUN --mount=type=cache,target=/root/.cache/pip pip3 install -r requirements.txt\n" in out
    assert "Successfully installed watchlist==1.0" in out and "Successfully tagged pkube.local/watchlist:1" in out
    assert index.hits == {"/simple/watchlist-1.0.tar": 1}

    # New code: the requirements layer comes from the build cache, the code and init steps run again.
    (app / "banner.txt").write_text("second")
    r = pkctl("image", "build", "--root", root, "-t", tag, app)
    assert r.returncode == 0, r.stderr
    assert "#4 CACHED\n" in r.stdout and "#5 DONE " in r.stdout and "#6 DONE " in r.stdout
    # New requirements: pip runs again and finds the first package in its cache mount.
    (app / "requirements.txt").write_text("watchlist==1.0\nextras==2.0\n")
    r = pkctl("image", "build", "--root", root, "-t", tag, app)
    assert r.returncode == 0, r.stderr
    assert "Using cached watchlist-1.0.tar" in r.stdout and "Successfully installed extras==2.0" in r.stdout
    assert index.hits == {"/simple/watchlist-1.0.tar": 1, "/simple/extras-2.0.tar": 1}
    assert r.stdout.rstrip().splitlines()[-2].startswith("[+] Building ")

    config = store.config(tag)["config"]
    assert config["WorkingDir"] == "/app" and config["ExposedPorts"] == {"5000/tcp": {}}
    assert {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"} <= set(config["Env"])
    async with node_runtime(store) as rt:
        sid = await rt.run_sandbox(SandboxConfig(name="watchlist", namespace="default", uid=unique("uid")))
        cid = await rt.create_container(sid, ContainerConfig(name="web", image=tag))
        await rt.start_container(cid)
        page = await fetch(rt, cid, "http://127.0.0.1:5000/index.html")
        assert page == "watchlist 1.0: 3 items, second\n"
