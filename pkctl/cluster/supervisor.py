"""`python -m pkctl.cluster.supervisor --home DIR`: keeps a local cluster's components running.

Started detached by `pkctl cluster up`. It starts the components in dependency order,
waits for each one's health before starting its dependents, restarts a component that
exits (back-off 1 s doubling to 30 s), and publishes each component's state in
<home>/run/<component>.json for `up` and `status`. SIGTERM stops everything in reverse
order (SIGTERM, grace, SIGKILL) and exits.

With several control planes (`up --control-planes N`) the supervisor also runs the API
balancer (balancer.py) on the cluster's API port, in front of the members' apiservers.

With several nodes (`up --nodes N`) it first builds the cluster network (nodes.py) and relays the API
from the cluster network's gateway address to the apiserver(s) on loopback, where the extra nodes reach it.

Components are started under `setpriv --pdeathsig TERM`, so even a SIGKILLed supervisor
cannot leave them running unsupervised.
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
import time
from typing import IO, Any, Sequence

from pkctl.cluster import procs
from pkctl.cluster.balancer import Balancer
from pkctl.cluster.components import Component, components
from pkctl.cluster.home import ClusterConfig, Home, resolve

log = logging.getLogger("pkube.supervisor")

BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
# A component that stayed up this long is considered recovered: its next crash backs off from the start again.
BACKOFF_RESET_AFTER = 60.0
STOP_GRACE = 10.0
# What `pkube COMPONENT` prints and returns when a module the component needs is missing.
LAUNCHER_UNAVAILABLE, UNAVAILABLE_MARK = 2, "is not available in this build"
HEALTH_INTERVAL = 10.0  # once Running, like a Kubernetes probe's default periodSeconds
LOG_ROTATE_BYTES = 20 * 2**20  # keep one older log of this size per component


def restart_delay(previous: float | None, ran: float) -> float:
    """Back-off before restarting a component that ran `ran` seconds: 1 s doubling to 30 s,
    from the start again once it had stayed up for a while."""
    if previous is None or ran >= BACKOFF_RESET_AFTER:
        return BACKOFF_START
    return min(previous * 2, BACKOFF_MAX)


class Keeper:
    """Runs one component for the lifetime of the supervisor."""

    def __init__(self, comp: Component, home: Home, cfg: ClusterConfig):
        self.comp, self.home, self.cfg = comp, home, cfg
        self.ready = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        # "supervisor" tells readers this record is current, not left over from an earlier run.
        self.state: dict[str, Any] = {"name": comp.name, "supervisor": os.getpid(), "state": "Waiting",
                                      "pid": None, "ticks": None,
                                      "started": None, "restarts": 0, "healthy": False, "detail": "",
                                      "ready_after": None, "last_exit": None}

    def publish(self, **changes: Any) -> None:
        self.state.update(changes)
        self.home.write_state(self.comp.name, self.state)

    async def run(self, deps: list["Keeper"]) -> None:
        if not self.comp.available():
            return self._not_available("not available in this build")
        self.publish(state="Waiting", detail="waiting for " + ", ".join(d.comp.name for d in deps) if deps else "")
        for d in deps:
            await d.ready.wait()
            if d.state["state"] == "NotAvailable":
                return self._not_available(f"needs {d.comp.name}, which is not available in this build")
        delay: float | None = None
        while True:
            began = time.monotonic()
            rc = await self._run_once()
            ran = time.monotonic() - began
            if rc == LAUNCHER_UNAVAILABLE and UNAVAILABLE_MARK in self._log_tail():
                # The component's package landed but a module it imports has not (work in progress):
                # the launcher says so; retrying cannot help until the code changes.
                return self._not_available(self._log_tail().strip().splitlines()[-1])
            delay = restart_delay(delay, ran)
            log.warning("%s exited with %s after %.1fs; restarting in %.0fs", self.comp.name, rc, ran, delay)
            self.publish(state="Restarting", pid=None, ticks=None, healthy=False, last_exit=rc,
                         restarts=self.state["restarts"] + 1, detail=f"exited with {rc}; restart in {delay:.0f}s")
            await asyncio.sleep(delay)

    async def _run_once(self) -> int:
        cmd = ["setpriv", "--pdeathsig", "TERM", "--", *self.comp.command(self.home, self.cfg)]
        logf = self._open_log()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=asyncio.subprocess.STDOUT,
                cwd=self.home.root)
        finally:
            logf.close()
        started = time.monotonic()
        record = procs.ProcRecord.of(self.proc.pid)
        log.info("started %s (pid %d)", self.comp.name, self.proc.pid)
        self.publish(state="Starting", pid=self.proc.pid, ticks=record.ticks if record else None,
                     started=time.time(), healthy=False, detail="waiting for health")
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            # Starting: probe often, so `up` is quick; Running: probe now and then for `status`.
            while not exited.done():
                ok, detail = await asyncio.to_thread(self.comp.probe, self.home, self.cfg,
                                                     time.monotonic() - started)
                running = time.monotonic() - started  # the probe itself may have waited for the answer
                if exited.done():
                    break
                if ok and self.state["state"] == "Starting":
                    log.info("%s ready after %.1fs", self.comp.name, running)
                    self.publish(state="Running", healthy=True, detail=detail, ready_after=round(running, 2))
                    self.ready.set()
                elif ok != self.state["healthy"] or detail != self.state["detail"]:
                    self.publish(healthy=ok, detail=detail)
                interval = HEALTH_INTERVAL if self.state["state"] == "Running" else 0.1
                await asyncio.wait([exited], timeout=interval)
            return await exited
        finally:
            if not exited.done():
                exited.cancel()

    def _not_available(self, why: str) -> None:
        self.publish(state="NotAvailable", pid=None, ticks=None, detail=why)
        self.ready.set()  # dependents learn from the state that they cannot start

    def _log_tail(self) -> str:
        with open(self.home.log(self.comp.name), "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 512))
            return f.read().decode(errors="replace")

    def _open_log(self) -> IO[bytes]:
        path = self.home.log(self.comp.name)
        if path.exists() and path.stat().st_size > LOG_ROTATE_BYTES:
            # at (re)start only: the running process keeps writing to its open file
            os.replace(path, path.with_name(path.name + ".1"))
        f = open(path, "ab")
        f.write(f"==== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} pkube supervisor: "
                f"starting {self.comp.name}\n".encode())
        f.flush()
        return f

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            log.info("stopping %s (pid %d)", self.comp.name, self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                log.warning("%s did not stop within %.0fs; killing it", self.comp.name, STOP_GRACE)
                self.proc.kill()
                await self.proc.wait()
        if self.state["state"] != "NotAvailable":
            self.publish(state="Stopped", pid=None, ticks=None, healthy=False, detail="")


def reap_leftovers(home: Home, cfg: ClusterConfig) -> None:
    """Stop components recorded by an earlier supervisor that died without cleaning up."""
    left = [r for c in components(cfg) if (r := procs.ProcRecord.from_state(home.read_state(c.name))) and r.alive()]
    if left:
        log.warning("stopping leftover processes of an earlier run: %s", [r.pid for r in left])
        procs.terminate(left, STOP_GRACE)


async def supervise(home: Home, cfg: ClusterConfig, components: Sequence[Component], stop: asyncio.Event) -> None:
    """Keep components running until stop is set, then stop them in reverse dependency order."""
    keepers = {c.name: Keeper(c, home, cfg) for c in components}
    tasks = [asyncio.create_task(k.run([keepers[d] for d in k.comp.after]), name=k.comp.name)
             for k in keepers.values()]
    stopping = asyncio.create_task(stop.wait())
    while not stop.is_set():
        done, _ = await asyncio.wait([stopping, *[t for t in tasks if not t.done()]],
                                     return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stopping and not t.cancelled() and t.exception():
                # A keeper must never die silently: the cluster would look healthy while it is not.
                log.error("keeper for %s failed", t.get_name(), exc_info=t.exception())
                stop.set()
        if all(t.done() for t in tasks):
            await stopping
    log.info("stopping the cluster")
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await stop_in_reverse_order(keepers)


async def stop_in_reverse_order(keepers: dict[str, Keeper]) -> None:
    """Each component stops once everything that depends on it has stopped; independent ones in parallel."""
    stopped = {name: asyncio.Event() for name in keepers}

    async def stop_one(k: Keeper) -> None:
        for other in keepers.values():
            if k.comp.name in other.comp.after:
                await stopped[other.comp.name].wait()
        try:
            await k.stop()
        finally:
            stopped[k.comp.name].set()

    await asyncio.gather(*(stop_one(k) for k in keepers.values()))


async def _run_until_signalled(home: Home, cfg: ClusterConfig) -> None:
    if cfg.workers:
        # Before the signal handlers: pyroute2 forks helpers to work inside the nodes' netns, and a forked
        # child that gets SIGTERM writes it to the wakeup fd it shares with this loop, which then stopped
        # the whole cluster as if the supervisor had been told to.
        from pkctl.cluster import nodes  # netlink: only a multi-node cluster needs it
        await asyncio.to_thread(nodes.ensure_network, cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    balancers = []
    apiservers = [(m.host, m.api_port) for m in cfg.members] or [("127.0.0.1", cfg.api_port)]
    if cfg.members and not cfg.joined:  # a joined control-plane member is reached at its own apiserver
        balancers.append(Balancer("127.0.0.1", cfg.api_port, apiservers))
    if cfg.workers:
        balancers.append(Balancer(cfg.node_gateway, cfg.api_port, apiservers))
    in_cluster = None
    if not cfg.workers and not cfg.joined and cfg.advertise_address:
        # pods reach the API here through the `kubernetes` Service (the apiservers listen on loopback)
        in_cluster = Balancer(cfg.advertise_address, cfg.api_port, apiservers)
    try:
        for b in balancers:
            await b.start()
        if in_cluster is not None:
            try:
                await in_cluster.start()
                balancers.append(in_cluster)
            except OSError as e:  # the cluster still runs; only in-cluster API clients lose their way in
                log.warning("pods cannot reach the API at %s:%d: %s", cfg.advertise_address, cfg.api_port,
                            e.strerror)
        await supervise(home, cfg, components(cfg), stop)
    finally:
        for b in balancers:
            await b.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pkube-supervisor")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = Home(resolve(args.home))
    cfg = home.load_config()
    lock = open(home.supervisor_lock, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another supervisor is running for %s", home.root)
        return 1
    me = procs.ProcRecord.of(os.getpid())
    assert me is not None
    reap_leftovers(home, cfg)
    home.write_state("supervisor", {"pid": me.pid, "ticks": me.ticks, "started": time.time()})
    try:
        asyncio.run(_run_until_signalled(home, cfg))
    finally:
        home.state_file("supervisor").unlink(missing_ok=True)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
