"""The nginx master of ingress/nginx.py on its own (a real nginx, no cluster): a configuration nginx refuses
never replaces the running one, a reload serves the new one, a master left by a killed controller is stopped."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ingress.main import ensure_default_certificate
from ingress.nginx import Nginx, _alive, _orphaned_workers, cleanup
from ingress.render import Options, Rendered, render
from tests.support.ingress import fetch
from tests.util import free_port, wait_for_sync

CONTROLLER = "test.pkube.io/nginx"
CLASS = {"metadata": {"name": "c"}, "spec": {"controller": CONTROLLER}}


def options(nginx: Nginx, http: int, https: int) -> Options:
    return Options(http, https, "127.0.0.1", str(nginx.certs_dir), str(nginx.certs_dir / "default.pem"), CONTROLLER,
                   pid_file=str(nginx.pid_file), temp_dir=str(nginx.dir / "tmp"), worker_processes="1")


def resource_ingress(path: str) -> dict:
    """An Ingress whose one path answers 404 from nginx itself (a resource backend): no upstream needed."""
    return {"metadata": {"namespace": "ns", "name": "i", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"ingressClassName": "c", "rules": [{"host": "x.test", "http": {"paths": [
                {"path": path, "pathType": "Exact", "backend": {"resource": {"kind": "K", "name": "n"}}}]}}]}}


@pytest.fixture
def nginx(tmp_path: Path):
    n = Nginx("/usr/sbin/nginx", tmp_path / "state")
    n.prepare()
    ensure_default_certificate(n.certs_dir / "default.pem")
    yield n
    if n.running():
        import asyncio
        asyncio.run(n.stop())


async def test_refused_configuration_keeps_the_running_one(nginx: Nginx) -> None:
    opts = options(nginx, free_port(), free_port())
    good = render([resource_ingress("/a")], [CLASS], [], [], [], opts)
    assert await nginx.apply(good)
    assert fetch(opts.http_port, "x.test", "/a").status == 404
    assert fetch(opts.http_port, "x.test", "/b").status == 404
    live = nginx.conf.read_text()
    bad = Rendered(config=good.config.replace("server_tokens off;", "no_such_directive on;"))
    assert not await nginx.apply(bad)
    assert nginx.conf.read_text() == live and nginx.running()
    assert fetch(opts.http_port, "x.test", "/a").status == 404  # still serving
    # a good change is picked up by a graceful reload of the same master
    pid = nginx.proc.pid if nginx.proc else 0
    moved = render([resource_ingress("/a")], [CLASS], [], [], [], opts)
    moved.config = moved.config.replace("return 404;", "return 410;")
    assert await nginx.apply(moved)
    wait_for_sync(lambda: fetch(opts.http_port, "x.test", "/a").status == 410, timeout=10, message="reloaded")
    assert nginx.proc is not None and nginx.proc.pid == pid and nginx.reloads == 1
    await nginx.stop()
    assert not nginx.pid_file.exists()
    with pytest.raises(OSError):
        fetch(opts.http_port, "x.test", "/a", timeout=1)


async def test_cleanup_stops_a_master_left_behind(nginx: Nginx) -> None:
    opts = options(nginx, free_port(), free_port())
    assert await nginx.apply(render([], [CLASS], [], [], [], opts))
    assert nginx.proc is not None
    orphan = nginx.proc.pid
    nginx.proc = None  # as if the controller had been killed: the master runs on
    try:
        assert cleanup(nginx.dir) == []  # returns once the master has exited
        wait_for_sync(lambda: os.waitpid(orphan, os.WNOHANG)[0] == orphan, timeout=5, message="master exited")
    finally:
        if Path(f"/proc/{orphan}").exists():  # the test failed: do not leave it running
            os.kill(orphan, 9)
            os.waitpid(orphan, 0)
    assert not Path(f"/proc/{orphan}").exists()
    with pytest.raises(OSError):
        fetch(opts.http_port, "x.test", "/", timeout=1)


async def test_cleanup_stops_the_workers_of_a_killed_master(nginx: Nginx) -> None:
    """A master killed with SIGKILL (a power cut, kill -9) leaves its workers serving on the ports; the next start
    must not fail with 'address already in use'."""
    opts = options(nginx, free_port(), free_port())
    assert await nginx.apply(render([resource_ingress("/a")], [CLASS], [], [], [], opts))
    assert nginx.proc is not None
    master = nginx.proc.pid
    workers = _orphaned_workers(master)
    assert workers, "nginx started no worker in its process group"
    os.kill(master, signal.SIGKILL)
    os.waitpid(master, 0)
    nginx.proc = None
    try:
        assert fetch(opts.http_port, "x.test", "/a").status == 404  # the orphans still serve
        assert cleanup(nginx.dir) == []
        assert not any(_alive(w) for w in workers)  # gone, or a zombie until init reaps it
        with pytest.raises(OSError):
            fetch(opts.http_port, "x.test", "/a", timeout=1)
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
