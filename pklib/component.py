"""What every `pkube COMPONENT` binary shares: client flags, the client, logging, the optional
/healthz + /metrics listener, and a main loop that stops on SIGTERM/SIGINT and turns user-facing
failures into one `error: ...` line with an exit code instead of a traceback.

Exit codes (the same for every component, so supervisors can tell them apart):
0 stopped by a signal; 1 failed while running (unreachable API server, lost Lease, ...);
2 the flags or the kubeconfig are wrong (found before or while starting).
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import functools
import gc
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, NoReturn, TypeVar

from aiohttp import web

from .api.wellknown import SYSTEM_NAMESPACE
from .client import Client
from .kubeconfig import KubeconfigError
from .leaderelection import LeaderElector


T = TypeVar("T")


class ConfigError(Exception):
    """A mistake in the flags or the environment they name; reported in one line."""


class LostLeadership(Exception):
    """The leader Lease was lost: the process exits so its supervisor restarts it as a standby."""


def add_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file to reach the API server")
    p.add_argument("--server", help="API server URL (instead of --kubeconfig)")
    p.add_argument("--token", help="bearer token for --server")


def add_leader_election_flags(p: argparse.ArgumentParser, what: str) -> None:
    """Kubernetes' --leader-elect flags; `what` says what only the leader does ("run", "schedule")."""
    p.add_argument("--leader-elect", action="store_true", help=f"{what} only while holding the leader Lease")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0)
    p.add_argument("--leader-elect-identity", default=None, help="defaults to <hostname>_<uuid>")
    p.add_argument("--leader-elect-predecessor", default=None,
                   help="an identity whose process is known to have exited (its supervisor reaped it): a Lease it "
                        "holds is taken at once instead of after its duration")
    p.add_argument("--leader-elect-predecessor-exited", type=float, default=None, metavar="UNIX_TIME",
                   help="when the predecessor exited (seconds since the epoch): the wait before taking its Lease "
                        "counts from then")


def leader_elector(client: Client, config: argparse.Namespace, lease_name: str) -> LeaderElector:
    """An elector for the kube-system/`lease_name` Lease, timed by the --leader-elect-* flags."""
    return LeaderElector(client, lease_name, SYSTEM_NAMESPACE, config.leader_elect_identity,
                         config.leader_elect_lease_duration, config.leader_elect_renew_deadline,
                         config.leader_elect_retry_period, predecessor=config.leader_elect_predecessor,
                         predecessor_exited=config.leader_elect_predecessor_exited)


def make_client(config: argparse.Namespace, user_agent: str) -> Client:
    """A client from --server/--token, else --kubeconfig (or $KUBECONFIG / the default file)."""
    if config.server:
        return Client(config.server, config.token, user_agent=user_agent)
    if config.token:
        raise ConfigError("--token needs --server")
    return Client.from_kubeconfig(config.kubeconfig, user_agent=user_agent)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def serve_http(app: web.Application, host: str, port: int, what: str = "metrics") -> web.AppRunner:
    """Serve `app` (the component's /healthz and /metrics) on host:port; a port in use is a ConfigError."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(f"cannot serve {what} on {host}:{port}: {e.strerror or e}") from None
    return runner


def leaf_errors(e: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as raised by a TaskGroup."""
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in leaf_errors(sub)]
    return [e]


def check_flags(check: Callable[[], Any], errors: tuple[type[BaseException], ...] = ()) -> int | None:
    """Run the component's flag checks before starting: 2 with one line on a mistake, None when fine."""
    caught: tuple[type[BaseException], ...] = (ConfigError, KubeconfigError, *errors)
    try:
        check()
    except caught as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return None


async def keep_leading(elector: LeaderElector, lost: Callable[[], None]) -> NoReturn:
    """Renew the Lease until it is lost, then call `lost()` and end the component with LostLeadership: it exits and
    its supervisor starts it again as a candidate (Kubernetes components exit in OnStoppedLeading)."""
    await elector.keep_renewing()
    lost()
    raise LostLeadership()


async def close_all(*closers: Callable[[], Awaitable[Any]] | None) -> None:
    """Run a component's clean-ups in order; None stands for a part that never started."""
    for close in closers:
        if close is not None:
            await close()


# Python's cyclic GC runs a young-generation pass every 700 net allocations of containers, and each pass that
# promotes survivors brings the next full pass (over every cached object) closer. A component is mostly cached
# JSON (watch cache, informers), which makes no cycles. With 20,000 the scheduler bench (1,000 hollow nodes,
# 5,000 pods) bound 411-430 pods/s instead of 287-368, its hollow kubelets used ~40 % less CPU, and the
# apiserver ~0.9 instead of ~1.03 ms of CPU per request; RSS stayed the same (bench/scheduler.py).
GC_THRESHOLD = (20_000, 20, 10)


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a component's main coroutine (run_until_signalled's default runner) on uvloop (libuv: faster answers,
    cheaper idle wake-ups), or on the standard asyncio loop with PKUBE_EVENT_LOOP=asyncio; with GC_THRESHOLD
    either way.

    The switch is for running under an LD_PRELOAD library that wraps pthread_cond_* behind its own lock, as
    libfaketime does (the clock-step test): uvloop's forked child runs Python's after-fork handler before it
    execs, which re-creates the GIL's condition variable and can block for ever on that lock if another thread
    held it at the fork, and the spawning loop then waits for that child for ever. The standard loop spawns with
    vfork and runs no handler in the child."""
    gc.set_threshold(*GC_THRESHOLD)
    frames = os.environ.get("PKUBE_TRACEMALLOC", "")
    if frames.isdigit() and int(frames) > 0 and not tracemalloc.is_tracing():
        tracemalloc.start(int(frames))
    if os.environ.get("PKUBE_EVENT_LOOP", "uvloop") == "asyncio":
        return asyncio.run(main)
    import uvloop
    return uvloop.run(main)


# How long a component may take to stop after SIGTERM/SIGINT before it exits anyway. A supervisor that dies
# sends its components one SIGTERM (pdeathsig): a cancellation swallowed somewhere below must not leave the
# component running unsupervised beside the next supervisor's.
STOP_GRACE = 20.0


def _awaiting(coro: Any) -> list[str]:
    """Where a task's coroutine waits: its chain of awaits, outermost first (print_stack shows only the first)."""
    where: list[str] = []
    while coro is not None and len(where) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            where.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
                or getattr(coro, "gi_yieldfrom", None))
    return where


def dump_tasks_on_sigusr1(loop: asyncio.AbstractEventLoop) -> None:
    """`kill -USR1 PID` logs every asyncio task of the component with where it waits (Go's goroutine dump): what
    a component that stopped making progress is stuck on. `kill -USR2 PID` writes a heap dump (dump_heap)."""
    log = logging.getLogger("pkube.component")

    def dump() -> None:
        tasks = asyncio.all_tasks(loop)
        log.warning("SIGUSR1: %d asyncio tasks", len(tasks))
        for t in tasks:
            log.warning("task %s:\n%s", t.get_name(), "\n".join(_awaiting(t.get_coro())))
    loop.add_signal_handler(signal.SIGUSR1, dump)
    loop.add_signal_handler(signal.SIGUSR2, dump_heap)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library this process runs with (for glibc's mallinfo2 and malloc_trim)."""
    return ctypes.CDLL(None)


def _mallinfo() -> dict[str, int]:
    """glibc's heap: bytes the main and thread arenas hold from the system (arena), of which in use (uordblks) and
    free but kept (fordblks), and in mmapped chunks (hblkhd): what RSS holds beyond Python's objects. Empty where
    there is no mallinfo2 (not glibc, or older than 2.33)."""
    try:
        fn = _libc().mallinfo2
    except AttributeError:
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {"arena": info.arena, "in_use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd}


_PYMALLOC_FIELDS = {"# arenas allocated current": "arenas", "# arenas highwater mark": "arenas_highwater",
                    "# bytes in allocated blocks": "in_use", "# bytes in available blocks": "free"}


def _pymalloc() -> dict[str, int]:
    """Python's own small-object allocator (pymalloc: objects of 512 bytes or less, in mmapped arenas that
    mallinfo does not count): arenas held now and at most, bytes in use and free inside them. An arena goes back
    to the system only when every object in it is gone, so a churning heap can hold many nearly empty ones.
    Read from sys._debugmallocstats, which writes to fd 2: that is pointed at a temp file meanwhile. Empty under
    tracemalloc (its hooks wrap the allocator, and Python then reports no arenas)."""
    stats = getattr(sys, "_debugmallocstats", None)
    if stats is None:
        return {}
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode(errors="replace")
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        key = _PYMALLOC_FIELDS.get(name.strip())
        if key:
            out[key] = int(value.strip().replace(",", ""))
    return out


# How often a component gives glibc's free-but-kept heap pages back to the system, and from how much free heap.
# The soak (bench.soak) showed the components' RSS growing by 15-20 MB/h while Python's objects and glibc's
# in-use bytes were flat: glibc kept the freed memory of request and pod churn in fragmented arenas (only the
# top of an arena goes back by itself). malloc_trim(0) returns every whole free page inside them (madvise);
# it walks the free lists, a few milliseconds at most, once a minute.
TRIM_INTERVAL = 60.0
TRIM_MIN_FREE = 4 << 20


def trim_heap(min_free: int = TRIM_MIN_FREE) -> bool:
    """Give glibc's free pages back to the system (malloc_trim) when the heap keeps at least `min_free` bytes
    free; whether it trimmed. False where there is no glibc."""
    info = _mallinfo()
    if info.get("free", 0) < min_free:
        return False
    _libc().malloc_trim(ctypes.c_size_t(0))
    return True


def keep_heap_trimmed(loop: asyncio.AbstractEventLoop) -> None:
    """trim_heap every TRIM_INTERVAL seconds for as long as `loop` runs (every long-running component)."""
    def tick() -> None:
        trim_heap()
        loop.call_later(TRIM_INTERVAL, tick)
    loop.call_later(TRIM_INTERVAL, tick)


def dump_heap() -> Path:
    """`kill -USR2 PID` writes what the component's heap holds, to find what grows in a long run (bench.soak):
    DIR/heap-PID-TIME.json with the number of live objects the cyclic GC tracks, by type, glibc's heap figures
    (_mallinfo), pymalloc's (_pymalloc), and, when the component
    was started with PKUBE_TRACEMALLOC=FRAMES (tracemalloc tracing allocations with that many frames), the
    tracemalloc snapshot beside it (DIR/heap-PID-TIME.tracemalloc, for Snapshot.load and compare_to). DIR is
    PKUBE_HEAP_DIR, or the temp dir."""
    log = logging.getLogger("pkube.component")
    directory = Path(os.environ.get("PKUBE_HEAP_DIR") or tempfile.gettempdir())
    base = directory / f"heap-{os.getpid()}-{time.time():.0f}"
    counts = Counter(type(o).__qualname__ for o in gc.get_objects())
    doc: dict[str, Any] = {"pid": os.getpid(), "time": time.time(), "gc_objects": sum(counts.values()),
                           "by_type": dict(counts.most_common(300))}
    malloc = _mallinfo()
    if malloc:
        doc["malloc"] = malloc
    pymalloc = _pymalloc()
    if pymalloc:
        doc["pymalloc"] = pymalloc
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(base.with_suffix(".tracemalloc")))
        doc["traced_bytes"] = tracemalloc.get_traced_memory()[0]
        doc["tracemalloc_own_bytes"] = tracemalloc.get_tracemalloc_memory()
    base.with_suffix(".json").write_text(json.dumps(doc))
    log.warning("SIGUSR2: heap dump written to %s.json (%d objects)", base, doc["gc_objects"])
    return base


def _stop_on_signal(task: asyncio.Task[Any], grace: float) -> Callable[[int], None]:
    """The handler of SIGTERM/SIGINT: cancel the main task (again on every signal, and once a second after the
    first, in case a cancellation was swallowed), and exit the process if it has not ended after `grace`."""
    loop = task.get_loop()
    stopping = False
    log = logging.getLogger("pkube.component")

    def recancel() -> None:
        if not task.done():
            task.cancel()
            loop.call_later(1.0, recancel)

    def give_up() -> None:
        if task.done():
            return
        log.error("did not stop within %.0fs of the signal; exiting now", grace)
        for t in asyncio.all_tasks(loop):  # best effort from this thread: what was still running, for the log
            log.error("still running: %s", t.get_coro())
        logging.shutdown()
        os._exit(1)

    def handle(signum: int) -> None:
        nonlocal stopping
        task.cancel()
        if stopping:
            return
        stopping = True
        log.info("%s received: stopping", signal.Signals(signum).name)
        loop.call_later(1.0, recancel)
        timer = threading.Timer(grace, give_up)  # a thread: works even if the event loop is stuck
        timer.daemon = True
        timer.start()
    return handle


def run_until_signalled(run: Callable[[], Coroutine[Any, Any, None]], *,
                        report: tuple[type[BaseException], ...] = (),
                        silent: tuple[type[BaseException], ...] = (LostLeadership,),
                        runner: Callable[[Coroutine[Any, Any, int]], int] = run_event_loop,
                        stop_grace: float = STOP_GRACE) -> int:
    """Run `run()` until it ends (0) or SIGTERM/SIGINT cancels it (0); a component that has not stopped
    `stop_grace` seconds after the signal exits 1 (see STOP_GRACE).

    A failure that is (or, from a TaskGroup, contains) one of `report` is printed as `error: ...`
    and exits 1; one of `silent` exits 1 without a line (the component logged why). A ConfigError
    or KubeconfigError not in `report` exits 2. Anything else is a bug and keeps its traceback.
    """
    async def serve() -> int:
        task = asyncio.create_task(run())
        loop = asyncio.get_running_loop()
        handle = _stop_on_signal(task, stop_grace)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, handle, sig)
        dump_tasks_on_sigusr1(loop)
        keep_heap_trimmed(loop)
        try:
            await task
        except asyncio.CancelledError:
            return 0
        except Exception as e:  # noqa: BLE001 - user-facing failures become one line + exit code
            for leaf in leaf_errors(e):
                if isinstance(leaf, silent):
                    return 1
                if isinstance(leaf, report):
                    print(f"error: {leaf}", file=sys.stderr)
                    return 1
            raise
        return 0

    try:
        return runner(serve())
    except (ConfigError, KubeconfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
