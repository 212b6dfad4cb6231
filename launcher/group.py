"""`pkube group [--healthz-bind-address HOST:PORT] -- COMPONENT [flags] -- COMPONENT [flags] ...`

Several components in one process, like k3s' single binary. Each Python process pays
35-45 MB before it does any work (interpreter, asyncio, aiohttp, ssl), so the local
cluster runs the controller-manager, scheduler, proxy and DNS as one group instead of
four processes. In a multi-node setup each still runs on its own (`pkube scheduler ...`).

Members run as tasks of one TaskGroup through their own `run(config, ready)`: when one
fails, the others are cancelled and the process exits, so the supervisor restarts them
together and a member never runs half-alive unnoticed. In a group that hosts the apiserver
(`pkctl cluster up --compact`) the others start once it serves. Every log line names the member
that wrote it (`... INFO [scheduler] scheduler.queue: ...`), which lets
`pkctl cluster logs scheduler` show one member's lines.

/healthz answers 200 once every member is ready, 503 before; `?verbose` lists each
member as `[+]name ok` / `[-]name not ready`, like Kubernetes' verbose health checks.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from contextvars import ContextVar
from types import ModuleType

from aiohttp import web

from launcher.main import COMPONENTS
from pklib.component import ConfigError, run_until_signalled, serve_http
from pklib.kubeconfig import KubeconfigError

log = logging.getLogger("group")

# The member whose code is running: tasks and to_thread workers inherit it from the task that
# started them, so a log record can name its member without the member's code knowing.
member: ContextVar[str] = ContextVar("pkube_member", default="group")

# A member the others wait for: in a group hosting the apiserver (`pkctl cluster up --compact`) they start once it
# serves, as separate processes start once its /readyz answers.
API_MEMBER = "apiserver"

LOG_FORMAT = "%(asctime)s %(levelname)s [%(member)s] %(name)s: %(message)s"


class MemberTag(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.member = member.get()
        return True


class Member:
    def __init__(self, name: str, module: ModuleType, config: argparse.Namespace):
        self.name, self.module, self.config = name, module, config
        self.ready = asyncio.Event()

    async def run(self) -> None:
        member.set(self.name)
        log.info("starting %s", self.name)  # a first line of its own in the shared log, even for a quiet member
        try:
            await self.module.run(self.config, self.ready)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            # the process-level error line cannot say which member failed; this log line does
            log.error("%s failed: %s", self.name, e)
            raise
        log.warning("%s stopped on its own; the rest of the group keeps running", self.name)

    async def run_after(self, first: "Member") -> None:
        """Start once `first` is ready: the members of a group hosting the apiserver need it serving."""
        await first.ready.wait()
        await self.run()


def split_argv(argv: list[str]) -> tuple[list[str], list[list[str]]]:
    """(group flags, [[component, flags...], ...]) from `flags -- comp flags -- comp flags`."""
    chunks: list[list[str]] = [[]]
    for arg in argv:
        if arg == "--":
            chunks.append([])
        else:
            chunks[-1].append(arg)
    return chunks[0], [c for c in chunks[1:] if c]


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pkube group", usage="pkube group [--healthz-bind-address HOST:PORT] -- COMPONENT [flags] "
                                  "[-- COMPONENT [flags] ...]",
        description="Run several components in one process (the local cluster's way to stay small).")
    p.add_argument("--healthz-bind-address", type=host_port, default=None,
                   help="serve /healthz (all members ready) on HOST:PORT")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def load_members(chunks: list[list[str]], components: dict[str, str] = COMPONENTS) -> list[Member]:
    """Import each named component and parse its flags with its own parser (its --help works too)."""
    members: list[Member] = []
    for name, *flags in chunks:
        if name not in components or name == "group":
            raise ConfigError(f"unknown component {name!r}; one of: "
                              f"{', '.join(c for c in components if c != 'group')}")
        if any(m.name == name for m in members):
            raise ConfigError(f"component {name!r} is given twice")
        module = importlib.import_module(components[name])
        if hasattr(module, "parse_args"):  # the apiserver checks its flags into a Config of its own
            config = module.parse_args(flags)
        else:
            parser = module.build_parser()
            parser.prog = f"pkube group -- {name}"
            config = parser.parse_args(flags)
        members.append(Member(name, module, config))
    if not members:
        raise ConfigError("name at least one component after `--`, e.g. `pkube group -- scheduler --kubeconfig F`")
    return members


def health_app(members: list[Member]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        ok = all(m.ready.is_set() for m in members)
        if "verbose" in request.query:
            lines = [f"[+]{m.name} ok" if m.ready.is_set() else f"[-]{m.name} not ready" for m in members]
            text = "\n".join([*lines, "healthz check passed" if ok else "healthz check failed"]) + "\n"
        else:
            text = "ok" if ok else "not ready: " + ", ".join(m.name for m in members if not m.ready.is_set())
        return web.Response(text=text, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    return app


async def run(members: list[Member], healthz: tuple[str, int] | None) -> None:
    runner = await serve_http(health_app(members), *healthz, what="/healthz") if healthz else None
    try:
        api = next((m for m in members if m.name == API_MEMBER), None)
        async with asyncio.TaskGroup() as tg:
            for m in members:
                tg.create_task(m.run() if api is None or m is api else m.run_after(api), name=m.name)
    finally:
        if runner is not None:
            await runner.cleanup()


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(MemberTag())


def main(argv: list[str]) -> int:
    own, chunks = split_argv(argv)
    config = build_parser().parse_args(own)
    setup_logging(config.verbose)
    try:
        members = load_members(chunks)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report: tuple[type[BaseException], ...] = (ConfigError, KubeconfigError)
    for m in members:
        getattr(m.module, "configure_process", lambda: None)()  # the apiserver's GIL switch interval
        report += tuple(t for t in m.module.REPORT if t not in report)
    return run_until_signalled(lambda: run(members, config.healthz_bind_address), report=report)
