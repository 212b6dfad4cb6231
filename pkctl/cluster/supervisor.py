"""`python -m pkctl.cluster.supervisor --home DIR`: keeps a local cluster's components running.

Started detached by `pkctl cluster up`. It starts the components in dependency order,
waits for each one's health before starting its dependents, restarts a component that
exits (back-off 1 s doubling to 30 s), and publishes each component's state in
<home>/run/<component>.json for `up` and `status`. SIGTERM stops everything in reverse
order (SIGTERM, grace, SIGKILL) and exits. SIGHUP (`cluster node add|remove`): it reads config.json
again and starts, stops or restarts only the components that changed (Supervision.apply).

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
from typing import IO, Any, Awaitable, Callable, Sequence

from pkctl.cluster import procs
from pkctl.cluster.balancer import Balancer
from pkctl.cluster.components import Component, components
from pkctl.cluster.home import ClusterConfig, Home, HomeError, resolve
from pklib.timeouts import wait_for

log = logging.getLogger("pkube.supervisor")

BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
# A component that stayed up this long is considered recovered: its next crash backs off from the start again.
BACKOFF_RESET_AFTER = 60.0
STOP_GRACE = 10.0
# What `pkube COMPONENT` prints and returns when a module the component needs is missing.
LAUNCHER_UNAVAILABLE, UNAVAILABLE_MARK = 2, "is not available in this build"
HEALTH_INTERVAL = 10.0  # once Running, like a Kubernetes probe's default periodSeconds
LOG_ROTATE_BYTES = 20 * 2**20  # keep one older log of this size per component


def restart_delay(previous: float | None, ran: float, was_healthy: bool = False) -> float:
    """Back-off before restarting a component that ran `ran` seconds. One that had stayed up a while or had passed
    its health check was not crash-looping (it was killed, or failed later): the cluster needs it back, so it
    restarts at once (a control-plane process killed mid-rollout left Services routing to deleted pods until its
    successor ran); once more within a short run after such an immediate restart, after 1 s. One that never got
    healthy backs off 1 s doubling to 30 s."""
    if ran >= BACKOFF_RESET_AFTER or (was_healthy and previous != 0):
        return 0.0
    if was_healthy or previous is None or previous < BACKOFF_START:
        return BACKOFF_START
    return min(previous * 2, BACKOFF_MAX)


class Keeper:
    """Runs one component for the lifetime of the supervisor."""

    def __init__(self, comp: Component, home: Home, cfg: ClusterConfig):
        self.comp, self.home, self.cfg = comp, home, cfg
        self.ready = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.started_with: list[str] = []  # the command line of its process (a config change may make another)
        self.exited_at: float | None = None  # time.time() when that process was seen to exit
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
            self.exited_at = time.time()
            ran = time.monotonic() - began
            was_healthy = self.state["state"] == "Running"  # it had passed its health check
            if rc == LAUNCHER_UNAVAILABLE and UNAVAILABLE_MARK in self._log_tail():
                # The component's package landed but a module it imports has not (work in progress):
                # the launcher says so; retrying cannot help until the code changes.
                return self._not_available(self._log_tail().strip().splitlines()[-1])
            delay = restart_delay(delay, ran, was_healthy)
            log.warning("%s exited with %s after %.1fs; restarting in %.0fs", self.comp.name, rc, ran, delay)
            self.publish(state="Restarting", pid=None, ticks=None, healthy=False, last_exit=rc,
                         restarts=self.state["restarts"] + 1, detail=f"exited with {rc}; restart in {delay:.0f}s")
            await asyncio.sleep(delay)

    async def _run_once(self) -> int:
        # The previous command's process (if any) has exited and was reaped here: its leader-election identities
        # are dead for sure, and their successors may take those Leases at once.
        self.started_with = with_predecessors(self.comp.command(self.home, self.cfg), self.started_with,
                                              self.exited_at)
        cmd = ["setpriv", "--pdeathsig", "TERM", "--", *self.started_with]
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
                await wait_for(self.proc.wait(), STOP_GRACE)
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


# What a reload gives the supervisor: the config it read, its digest (Home.read_config), and its components.
Plan = tuple[ClusterConfig, str, Sequence[Component]]
# Called with a new config before its new components start (the cluster network of added nodes, the API relay).
Prepare = Callable[[ClusterConfig], Awaitable[None]]


class Supervision:
    """The keepers of one supervisor run. `apply` moves them to a new config without touching what did not change
    (`cluster node add|remove` rewrites config.json and sends SIGHUP): components that are gone stop, new ones
    start, and one whose command line changed restarts, unless others depend on it (etcd, the apiservers): those
    keep running and take their new flags at their next start, so a node change never interrupts the API."""

    def __init__(self, home: Home, cfg: ClusterConfig, digest: str = ""):
        self.home, self.cfg, self.digest = home, cfg, digest
        self.keepers: dict[str, Keeper] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, comps: Sequence[Component]) -> None:
        for c in comps:
            self.keepers[c.name] = Keeper(c, self.home, self.cfg)
            self.keepers[c.name].publish()  # its record is this run's from now on, not the one it replaces
        for c in comps:
            k = self.keepers[c.name]
            self.tasks[c.name] = asyncio.create_task(k.run([self.keepers[d] for d in c.after]), name=c.name)

    async def stop(self, names: Sequence[str]) -> None:
        tasks = [self.tasks.pop(name) for name in names]
        for t in tasks:
            t.cancel()  # the keeper stops watching; its process runs on until k.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await stop_in_reverse_order({name: self.keepers.pop(name) for name in names})

    async def apply(self, plan: Plan, prepare: Prepare | None = None) -> dict[str, list[str]]:
        cfg, digest, comps = plan
        new = {c.name: c for c in comps}
        depended = {d for c in comps for d in c.after}
        gone = [n for n in self.keepers if n not in new]
        added = [n for n in new if n not in self.keepers]
        changed = [n for n in new if n in self.keepers and _comparable(self.keepers[n].started_with or
                   self.keepers[n].comp.command(self.home, self.keepers[n].cfg)) != _comparable(
                       new[n].command(self.home, cfg))]
        restarted = [n for n in changed if n not in depended]
        later = [n for n in changed if n in depended]
        log.info("config %s: starting %s, stopping %s, restarting %s (new flags)%s", digest[:12],
                 added or "nothing", gone or "nothing", restarted or "nothing",
                 f"; {', '.join(later)}: kept running, with the new flags from the next start" if later else "")
        await self.stop(gone)
        self.cfg, self.digest = cfg, digest
        for name, k in self.keepers.items():
            k.comp, k.cfg = new[name], cfg
        if prepare is not None:
            await prepare(cfg)
        self.start([new[n] for n in added])  # first: nothing it needs restarts
        await self.stop(restarted)
        self.start([new[n] for n in restarted])
        return {"started": added, "stopped": gone, "restarted": restarted}


IDENTITY_FLAG, PREDECESSOR_FLAG = "--leader-elect-identity", "--leader-elect-predecessor"
EXITED_FLAG = "--leader-elect-predecessor-exited"


def _comparable(argv: list[str]) -> list[str]:
    """A command line as far as a config change goes: leader-election identities are new at every start, and so are
    the predecessors a restart names (with_predecessors)."""
    kept: list[str] = []
    for i, a in enumerate(argv):
        before = argv[i - 1] if i else ""
        if not {PREDECESSOR_FLAG, EXITED_FLAG} & {a, before}:
            kept.append("" if before == IDENTITY_FLAG else a)
    return kept


def with_predecessors(argv: list[str], exited: list[str], exited_at: float | None = None) -> list[str]:
    """`argv` with `--leader-elect-predecessor OLD` after its n-th `--leader-elect-identity NEW`, where OLD is the n-th
    identity of `exited`, the command line of the component's process that has exited (and was reaped by this
    supervisor, so nothing runs as OLD any more), and `--leader-elect-predecessor-exited T` when it exited at
    time.time() `exited_at`. Nothing is added where the identity stays the same."""
    dead = iter([exited[i + 1] for i, a in enumerate(exited[:-1]) if a == IDENTITY_FLAG])
    out: list[str] = []
    for i, a in enumerate(argv):
        out.append(a)
        if i and argv[i - 1] == IDENTITY_FLAG:
            old = next(dead, None)
            if old and old != a:
                out += [PREDECESSOR_FLAG, old]
                if exited_at is not None:
                    out += [EXITED_FLAG, f"{exited_at:.3f}"]
    return out


async def supervise(home: Home, cfg: ClusterConfig, components: Sequence[Component], stop: asyncio.Event,
                    reload: asyncio.Event | None = None, load: Callable[[], Plan] | None = None,
                    prepare: Prepare | None = None, digest: str = "") -> None:
    """Keep components running until stop is set, then stop them in reverse dependency order. Each time `reload`
    is set, `load()` gives the config and components to move to (Supervision.apply), `prepare` readies the
    host for them; what was done is recorded in <home>/run/supervisor.json (`config`: the digest applied)."""
    run = Supervision(home, cfg, digest)
    run.start(components)
    stopping = asyncio.create_task(stop.wait())
    reloading = asyncio.create_task((reload or asyncio.Event()).wait())
    try:
        while not stop.is_set():
            tasks = [t for t in run.tasks.values() if not t.done()]
            done, _ = await asyncio.wait([stopping, reloading, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t not in (stopping, reloading) and not t.cancelled() and t.exception():
                    # A keeper must never die silently: the cluster would look healthy while it is not.
                    log.error("keeper for %s failed", t.get_name(), exc_info=t.exception())
                    stop.set()
            if reloading in done and reload is not None:
                reload.clear()
                reloading = asyncio.create_task(reload.wait())
                if load is not None and not stop.is_set():
                    await _reload(run, load, prepare)
            elif all(t.done() for t in run.tasks.values()) and reloading not in done:
                await asyncio.wait([stopping, reloading], return_when=asyncio.FIRST_COMPLETED)
    finally:
        reloading.cancel()
    log.info("stopping the cluster")
    for t in run.tasks.values():
        t.cancel()
    await asyncio.gather(*run.tasks.values(), return_exceptions=True)
    await stop_in_reverse_order(run.keepers)


async def _reload(run: Supervision, load: Callable[[], Plan], prepare: Prepare | None) -> None:
    try:
        plan = load()
    except HomeError as e:
        log.error("not reloading: %s", e)
        return
    if plan[1] == run.digest:
        log.info("config %s unchanged", plan[1][:12])
        return
    try:
        done = await run.apply(plan, prepare)
    except Exception:  # noqa: BLE001 - a failed reload must not take the running cluster down with the supervisor
        log.exception("applying config %s failed", plan[1][:12])
        return
    state = run.home.read_state("supervisor") or {}
    run.home.write_state("supervisor", {**state, "config": run.digest, "applied": done, "applied_at": time.time()})


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


async def _run_until_signalled(home: Home, cfg: ClusterConfig, digest: str) -> None:
    if cfg.workers:
        # Before the signal handlers: pyroute2 forks helpers to work inside the nodes' netns, and a forked
        # child that gets SIGTERM writes it to the wakeup fd it shares with this loop, which then stopped
        # the whole cluster as if the supervisor had been told to. (Nodes added later: see prepare.)
        from pkctl.cluster import nodes  # netlink: only a multi-node cluster needs it
        await asyncio.to_thread(nodes.ensure_network, cfg)
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    if home.read_config()[1] != digest:  # changed before SIGHUP was ours (main ignored it until now)
        reload.set()
    apiservers = [(m.host, m.api_port) for m in cfg.members] or [("127.0.0.1", cfg.api_port)]
    # a joined control-plane member is reached at its own apiserver
    balancers = [Balancer("127.0.0.1", cfg.api_port, apiservers)] if cfg.members and not cfg.joined else []
    relays: dict[str, Balancer] = {}

    async def relay(new: ClusterConfig) -> None:
        """The API where the other nodes reach it (the cluster network's gateway) and where pods do (the
        `kubernetes` Service's endpoint: the node's address or the gateway; the apiservers listen on loopback).
        A relay stays while the supervisor lives: an apiserver started before a node change still advertises
        the address it was started with."""
        wanted = {new.node_gateway: True} if new.workers else {}
        if not new.joined and new.advertise_address:
            wanted.setdefault(new.advertise_address, False)
        for address, needed in wanted.items():
            if address in relays:
                continue
            b = Balancer(address, new.api_port, apiservers)
            try:
                await b.start()
                relays[address] = b
            except OSError as e:
                if needed:
                    raise
                # the cluster still runs; only in-cluster API clients lose their way in
                log.warning("pods cannot reach the API at %s:%d: %s", address, new.api_port, e.strerror)

    async def prepare(new: ClusterConfig) -> None:
        """Nodes added: the cluster network and their netns (nodes.py, in a process of its own: see above), then
        the API relays."""
        if new.workers:
            argv = procs.python_module("pkctl.cluster.nodes", "--home", str(home.root))
            p = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await p.communicate()
            if p.returncode:
                log.error("the cluster network for the nodes: %s", out.decode(errors="replace").strip())
        try:
            await relay(new)
        except OSError as e:
            log.error("the nodes cannot reach the API at %s:%d: %s", new.node_gateway, new.api_port, e.strerror)

    def load() -> Plan:
        new, new_digest = home.read_config()
        return new, new_digest, components(new)

    try:
        for b in balancers:
            await b.start()
        await relay(cfg)
        await supervise(home, cfg, components(cfg), stop, reload, load, prepare, digest)
    finally:
        for b in [*balancers, *relays.values()]:
            await b.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pkube-supervisor")
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = Home(resolve(args.home))
    # `cluster node add|remove` sends SIGHUP after changing the config: ignored until the loop handles it, which
    # then compares the config's digest with the one read here
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    cfg, digest = home.read_config()
    lock = open(home.supervisor_lock, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another supervisor is running for %s", home.root)
        return 1
    me = procs.ProcRecord.of(os.getpid())
    assert me is not None
    reap_leftovers(home, cfg)
    home.write_state("supervisor", {"pid": me.pid, "ticks": me.ticks, "started": time.time(), "config": digest})
    try:
        asyncio.run(_run_until_signalled(home, cfg, digest))
    finally:
        home.state_file("supervisor").unlink(missing_ok=True)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
