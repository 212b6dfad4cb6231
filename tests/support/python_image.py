"""A local Python base image and a local package index, for the Dockerfiles people write (no network needed).

`ensure_python_image(store)` assembles `pkube.local/python-local:3.X` from this host's own Python: the
interpreter, its stdlib (without test/, idlelib, tkinter, the config-* dir and __pycache__), Debian's pip from
dist-packages, the shared libraries `ldd` names for the interpreter and lib-dynload plus the dynamic loader, on
top of the bundled busybox (/bin/sh and the usual applets). `python3`, `python`, `pip3` and `pip` are on PATH;
pip installs into /usr/local/lib/python3.X/dist-packages and console scripts into /usr/local/bin, as on Debian.

`write_wheel` writes a pure-Python wheel by hand (a zip with METADATA, WHEEL, entry_points.txt and RECORD), and
`SimpleIndex` serves wheels as a PEP 503 simple index over HTTP on every address of this host, so a `RUN pip3
install` in a build sandbox reaches it through the host address `index_host()` returns.
"""
from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

from images.build import build
from images.busybox import ensure_busybox
from images.store import ImageStore
from tests.support.fileserver import FileServer

HOST_PYTHON = Path("/usr/bin/python3")
PURELIB = Path("/usr/lib/python3/dist-packages")
SKIP_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data", "__pycache__",
               "EXTERNALLY-MANAGED"}
PIP_SCRIPT = "#!/usr/bin/python3\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"


def host_python() -> tuple[Path, str] | None:
    """The host's system Python binary and its X.Y version, if it and Debian's pip are installed."""
    if not HOST_PYTHON.exists() or not (PURELIB / "pip").is_dir():
        return None
    binary = HOST_PYTHON.resolve()
    m = re.fullmatch(r"python(3\.\d+)", binary.name)
    return (binary, m.group(1)) if m else None


def _libraries(files: list[Path]) -> set[Path]:
    """The shared libraries (and the dynamic loader) the given ELF files need, as `ldd` resolves them."""
    libs: set[Path] = set()
    for f in files:
        out = subprocess.run(["ldd", str(f)], capture_output=True, text=True).stdout
        libs.update(Path(p) for p in re.findall(r"(/\S+) \(0x", out))  # "x.so => /lib/x.so (0x..)", the loader
    return libs


def python_rootfs(dest: Path) -> str:
    """Fill `dest` with the files of the host's Python (paths as in the image); returns the X.Y version."""
    found = host_python()
    if found is None:
        raise RuntimeError(f"needs {HOST_PYTHON} and Debian's pip in {PURELIB} (apt-get install python3-pip)")
    binary, version = found
    stdlib = Path(f"/usr/lib/python{version}")
    (dest / "usr/bin").mkdir(parents=True)
    shutil.copy2(binary, dest / "usr/bin" / binary.name)
    for link in ("python3", "python"):
        (dest / "usr/bin" / link).symlink_to(binary.name)
    for name in ("pip3", "pip"):
        (dest / "usr/bin" / name).write_text(PIP_SCRIPT)
        (dest / "usr/bin" / name).chmod(0o755)
    shutil.copytree(stdlib, dest / stdlib.relative_to("/"), symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in SKIP_STDLIB or n.startswith("config-")])
    shutil.copytree(PURELIB / "pip", dest / "usr/lib/python3/dist-packages/pip",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (dest / f"usr/local/lib/python{version}/dist-packages").mkdir(parents=True)
    for lib in _libraries([binary, *sorted((stdlib / "lib-dynload").glob("*.so"))]):
        target = dest / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    return version


def ensure_python_image(store: ImageStore, workdir: Path) -> str:
    """`pkube.local/python-local:3.X` in `store` (built once per store), FROM the bundled busybox."""
    found = host_python()
    if found is None:
        raise RuntimeError(f"needs {HOST_PYTHON} and Debian's pip in {PURELIB} (apt-get install python3-pip)")
    tag = f"pkube.local/python-local:{found[1]}"
    if store.resolve(tag) is not None:
        return tag
    ctx = workdir / "python-local"
    python_rootfs(ctx / "rootfs")
    (ctx / "Dockerfile").write_text(f"FROM {ensure_busybox(store)}\nCOPY rootfs/ /\n"
                                    "ENV PYTHONIOENCODING=utf-8 LANG=C.UTF-8\nCMD [\"python3\"]\n")
    build(store, ctx, tag=tag, progress=lambda _: None)
    shutil.rmtree(ctx)
    return tag


def write_wheel(dest: Path, name: str, version: str, files: dict[str, str],
                console_scripts: dict[str, str] | None = None) -> Path:
    """A pure-Python wheel `name-version-py3-none-any.whl` in `dest` with the given module files."""
    dist = re.sub(r"[-_.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: pkube-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if console_scripts:
        meta[f"{info}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in console_scripts.items())
    entries = {**files, **meta}
    record = []
    for path, text in entries.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}\n")
    record.append(f"{info}/RECORD,,\n")
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in entries.items():
            zf.writestr(path, text)
        zf.writestr(f"{info}/RECORD", "".join(record))
    return wheel


class SimpleIndex(FileServer):
    """A PEP 503 simple index of the wheels in `root`/wheels, served on every address; `hits` counts the requests
    per path. Files are sent with PyPI's long max-age, so pip's HTTP cache (a cache mount in a build) serves them
    again without asking."""

    def __init__(self, root: Path):
        (root / "wheels").mkdir(parents=True, exist_ok=True)
        super().__init__(root, "0.0.0.0")

    def extra_headers(self, path: str) -> dict[str, str]:
        return {"Cache-Control": "max-age=365000000, immutable, public"} if path.startswith("/wheels/") else {}

    def add(self, wheel: Path) -> None:
        """Publish `wheel` (moved under wheels/) on the project's page /simple/<normalised name>/."""
        shutil.move(wheel, self.root / "wheels" / wheel.name)
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        page = self.root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="/wheels/{w.name}">{w.name}</a>\n'
                        for w in sorted((self.root / "wheels").glob(f"{wheel.name.split('-')[0]}-*.whl")))
        (page / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")

    def requirements_options(self) -> str:
        """The lines that point `pip install -r` at this index from a build sandbox (plain HTTP: a trusted host)."""
        host = index_host()
        return f"--index-url http://{host}:{self.port}/simple/\n--trusted-host {host}\n"


# The flask-watchlist example (docs-examples/flask-watchlist) on the local Python. Flask and gunicorn are not on
# this machine: the index has `watchlist-dep` (the app's data) and `minihttp`, a WSGI server with gunicorn's
# command line; the app is a plain WSGI callable reading the SQLite database `init_db.py` made.
MINIHTTP = '''"""gunicorn's command line on wsgiref: minihttp [-w WORKERS] [-b HOST:PORT] MODULE:APP"""
import argparse, importlib, os, socketserver, sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main():
    p = argparse.ArgumentParser(prog="minihttp")
    p.add_argument("-w", "--workers", type=int, default=1)
    p.add_argument("-b", "--bind", default="127.0.0.1:8000")
    p.add_argument("app")
    a = p.parse_args()
    sys.path.insert(0, os.getcwd())
    module, _, name = a.app.partition(":")
    app = getattr(importlib.import_module(module), name or "application")
    host, _, port = a.bind.rpartition(":")
    httpd = make_server(host, int(port), app, server_class=Server, handler_class=WSGIRequestHandler)
    print(f"[INFO] Listening at: http://{a.bind} ({os.getpid()})", flush=True)
    for _ in range(a.workers - 1):
        if os.fork() == 0:
            break
    print(f"[INFO] Booting worker with pid: {os.getpid()}", flush=True)
    httpd.serve_forever()
'''
INIT_DB = '''import sqlite3
import watchlist_dep

db = sqlite3.connect("/app/watchlist.db")
db.execute("CREATE TABLE movies (title TEXT)")
db.executemany("INSERT INTO movies VALUES (?)", [(t,) for t in watchlist_dep.MOVIES])
db.commit()
print("initialised", len(watchlist_dep.MOVIES), "movies")
'''
APP = '''import sqlite3
import watchlist_dep

BANNER = "{banner}"


def app(environ, start_response):
    titles = [r[0] for r in sqlite3.connect("/app/watchlist.db").execute("SELECT title FROM movies")]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"watchlist {{watchlist_dep.__version__}}: {{', '.join(titles)}} ({{BANNER}})\\n".encode()]
'''




def watchlist_app(banner: str) -> str:
    """app.py of the watchlist project, its page ending in `(banner)`."""
    return APP.format(banner=banner)


def watchlist_project(d: Path, model: Path, base: str, index: SimpleIndex,
                      requirements: str = "watchlist-dep==1.0\nminihttp==0.1\n") -> None:
    """The project directory `d`: the `model` Dockerfile with only its base image (`base`) and server program
    (minihttp for gunicorn) changed, requirements.txt pointing at `index` (which gets the project's wheels),
    init_db.py and app.py."""
    if not (index.root / "simple" / "minihttp").is_dir():
        index.add(write_wheel(index.root, "watchlist-dep", "1.0", {
            "watchlist_dep/__init__.py": '__version__ = "1.0"\nMOVIES = ["Alien", "Brazil", "Heat"]\n'}))
        index.add(write_wheel(index.root, "minihttp", "0.1", {"minihttp/__init__.py": MINIHTTP},
                              console_scripts={"minihttp": "minihttp:main"}))
        index.add(write_wheel(index.root, "extras", "2.0", {"extras.py": "VERSION = '2.0'\n"}))
    text = model.read_text()
    dockerfile = text.replace("python:3.10-alpine", base).replace('CMD ["gunicorn"', 'CMD ["minihttp"')
    if dockerfile.count(base) != 1 or '"minihttp", "-w", "2"' not in dockerfile:
        raise RuntimeError(f"{model}: not the flask-watchlist Dockerfile this helper knows")
    d.mkdir(parents=True, exist_ok=True)
    (d / "Dockerfile").write_text(dockerfile)
    (d / "requirements.txt").write_text(index.requirements_options() + requirements)
    (d / "init_db.py").write_text(INIT_DB)
    (d / "app.py").write_text(watchlist_app("first"))


def index_host() -> str:
    """An address of this host other than loopback: a RUN step reaches it through its sandbox's gateway."""
    out = subprocess.run(["ip", "-4", "-o", "route", "get", "1.1.1.1"], capture_output=True, text=True).stdout
    m = re.search(r"\bsrc (\S+)", out)
    if m and not m.group(1).startswith("127."):
        return m.group(1)
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    addrs = re.findall(r"inet (\S+)/", out)
    if not addrs:
        raise RuntimeError("no IPv4 address other than loopback on this host")
    return addrs[0]
