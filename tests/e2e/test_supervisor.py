"""The supervisor with stand-in components (tiny real processes): start order, health gating,
components missing from the build, restarts, and the reverse-order stop."""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from pkctl.cluster.components import Component, Health
from pkctl.cluster.home import ClusterConfig, Home
from pkctl.cluster.procs import ProcRecord
from pkctl.cluster.supervisor import supervise
from tests.util import wait_for

pytestmark = pytest.mark.timeout(60)


def marker_probe(home: Home, cfg: ClusterConfig, running: float, name: str = "") -> Health:
    return (home.root / f"{name}.ready").exists(), "marker"


def python_component(name: str, after: tuple[str, ...], code: str) -> Component:
    """A component that runs `python -c code` in the home and is healthy once it wrote <name>.ready."""
    return Component(name, None, sys.executable, after, lambda home, cfg: ["-c", code],
                     lambda home, cfg, running: marker_probe(home, cfg, running, name))


SERVE = "import pathlib, time; pathlib.Path('{name}.ready').touch(); time.sleep(120)"
# Fails on its first start (leaves a note), then behaves.
FLAKY = ("import pathlib, sys, time\n"
         "p = pathlib.Path('flaky.tried')\n"
         "if not p.exists(): p.touch(); sys.exit(3)\n"
         "pathlib.Path('flaky.ready').touch(); time.sleep(120)")
HALF_LANDED = ("import sys; print(\"pkube: component 'half' is not available in this build (half.x)\"); "
               "sys.exit(2)")


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path)
    for d in (h.logs, h.run):
        d.mkdir()
    return h


async def test_supervisor_orders_gates_restarts_and_stops(home: Home, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pkube.supervisor")
    components = [
        python_component("base", (), SERVE.format(name="base")),
        Component("missing", "pkt_no_such_package.main", None, ("base",), lambda h, c: [],
                  lambda h, c, r: (True, "")),
        python_component("needs-missing", ("missing",), SERVE.format(name="needs-missing")),
        python_component("half", ("base",), HALF_LANDED),
        python_component("flaky", ("base",), FLAKY),
        python_component("top", ("flaky",), SERVE.format(name="top")),
    ]
    cfg = ClusterConfig(1, 2, 3)
    stop = asyncio.Event()
    task = asyncio.create_task(supervise(home, cfg, components, stop))
    try:
        await wait_for(lambda: _state(home, "top", "Running"), timeout=20, message="top running")
        states = {c.name: home.read_state(c.name) or {} for c in components}
        assert states["missing"]["state"] == "NotAvailable"
        assert states["needs-missing"]["state"] == "NotAvailable"
        assert "needs missing" in states["needs-missing"]["detail"]
        assert states["half"]["state"] == "NotAvailable" and "not available in this build" in states["half"]["detail"]
        assert states["flaky"]["restarts"] == 1 and states["flaky"]["last_exit"] == 3
        assert states["flaky"]["state"] == "Running"
        # top was gated on flaky's health: it started only after flaky's second start became ready
        started = [r.getMessage().split()[1] for r in caplog.records if r.getMessage().startswith("started ")]
        assert [n for n in started if n != "half"] == ["base", "flaky", "flaky", "top"]
        assert started.count("half") == 1  # no restarts for a component missing from the build
        running = [ProcRecord.from_state(states[n]) for n in ("base", "flaky", "top")]
        assert all(r is not None and r.alive() for r in running)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert not any(r is not None and r.alive() for r in running)
    stops = [r.getMessage().split()[1] for r in caplog.records if r.getMessage().startswith("stopping ") and
             "cluster" not in r.getMessage()]
    # dependents first: top before flaky, flaky before base
    assert stops.index("top") < stops.index("flaky") < stops.index("base")
    assert all((home.read_state(n) or {}).get("state") == "Stopped" for n in ("base", "flaky", "top"))


async def _state(home: Home, name: str, state: str) -> bool:
    return (home.read_state(name) or {}).get("state") == state


async def test_a_reload_starts_stops_and_restarts_only_what_changed(home: Home,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """`cluster node add|remove`: a new config (SIGHUP) starts new components, stops those gone and restarts a
    component whose command line changed; one that others depend on (etcd, apiserver) keeps running."""
    caplog.set_level(logging.INFO, logger="pkube.supervisor")

    def serve(name: str, after: tuple[str, ...] = (), extra: str = "") -> Component:
        return python_component(name, after, SERVE.format(name=name) + extra)
    before = [serve("base"), serve("leaf", ("base",)), serve("gone", ("base",))]
    after = [serve("base", extra=" # new flags"), serve("leaf", ("base",), " # new flags"), serve("new", ("base",))]
    cfg = ClusterConfig(1, 2, 3)
    stop, reload = asyncio.Event(), asyncio.Event()
    prepared: list[ClusterConfig] = []

    async def prepare(c: ClusterConfig) -> None:
        prepared.append(c)
    home.write_state("supervisor", {"pid": 1, "config": "old"})
    task = asyncio.create_task(supervise(home, cfg, before, stop, reload, lambda: (cfg, "new-digest", after),
                                         prepare, "old"))
    try:
        for name in ("base", "leaf", "gone"):
            await wait_for(lambda: _state(home, name, "Running"), timeout=20, message=f"{name} running")
        pids = {name: ProcRecord.from_state(home.read_state(name)) for name in ("base", "leaf", "gone")}
        reload.set()
        await wait_for(lambda: _holds((home.read_state("supervisor") or {}).get("config") == "new-digest"),
                       timeout=20, message="config applied")
        assert home.read_state("supervisor")["applied"] == {"started": ["new"], "stopped": ["gone"],
                                                            "restarted": ["leaf"]}
        assert prepared == [cfg]
        await wait_for(lambda: _state(home, "new", "Running"), timeout=20, message="new running")
        await wait_for(lambda: _state(home, "leaf", "Running"), timeout=20, message="leaf running again")
        assert ProcRecord.from_state(home.read_state("base")) == pids["base"] and pids["base"].alive()  # type: ignore
        assert not pids["gone"].alive() and home.read_state("gone")["state"] == "Stopped"  # type: ignore
        assert not pids["leaf"].alive() and ProcRecord.from_state(home.read_state("leaf")) != pids["leaf"]  # type: ignore
        assert any("base: kept running" in r.getMessage() for r in caplog.records)
        # the same config again: nothing to do
        reload.set()
        await wait_for(lambda: _holds(any("unchanged" in r.getMessage() for r in caplog.records)), timeout=10,
                       message="unchanged logged")
        assert ProcRecord.from_state(home.read_state("new")).alive()  # type: ignore[union-attr]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert all((home.read_state(n) or {}).get("state") == "Stopped" for n in ("base", "leaf", "new"))


async def _holds(value: bool) -> bool:
    return value
