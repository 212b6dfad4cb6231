"""`pkube dashboard`: flags, and serving the dashboard until stopped.

When listening it prints one line on stdout, the one-time login URL (`pkctl dashboard` reads it); logs go to stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys

from aiohttp import web

from pklib.client import Client
from pklib.component import ConfigError, add_client_flags, check_flags, make_client, run_until_signalled, setup_logging
from pklib.errors import ConnectionFailed
from pklib.flagtypes import int_in_range
from pklib.kubeconfig import KubeconfigError

from .app import WEB, Access, build_app

log = logging.getLogger("dashboard")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkube dashboard", description="Serve the pkube web dashboard.")
    add_client_flags(p)
    p.add_argument("--context", help="kubeconfig context to use")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int_in_range(0, 65535, "port"), default=0, help="port to listen on (0: any free one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow an --address other than loopback (anyone who gets the login link can log in)")
    p.add_argument("--sample-interval", type=int_in_range(1, 60, "number of seconds", show_range=True),
                   default=os.environ.get("PKUBE_DASHBOARD_SAMPLE_SECONDS") or "10",  # argparse checks it too
                   help="seconds between two samples of CPU and memory use for the plots (default 10, or "
                        "$PKUBE_DASHBOARD_SAMPLE_SECONDS)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check(config: argparse.Namespace) -> None:
    if not is_loopback(config.address) and not config.allow_remote:
        raise ConfigError(f"--address {config.address} is not a loopback address: the dashboard acts with your "
                          "credentials, so it listens on loopback unless --allow-remote is given")


def host_names(address: str, port: int) -> set[str]:
    """The Host headers that name this server."""
    if is_loopback(address):
        return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    return {f"[{address}]:{port}" if ":" in address else f"{address}:{port}"}


async def run(config: argparse.Namespace, ready: asyncio.Event) -> None:
    check(config)
    if not (WEB / "node_modules").is_dir():
        log.warning("%s is missing: the terminal and the YAML editor need `npm ci` there "
                    "(scripts/install-deps.sh runs it)", WEB / "node_modules")
    if config.context and not config.server:
        client = Client.from_kubeconfig(config.kubeconfig, config.context, user_agent="pkube-dashboard")
    else:
        client = make_client(config, "pkube-dashboard")
    access = Access()
    # Open watches and log streams end at once on stop (aiohttp would wait 60 s for them).
    runner = web.AppRunner(build_app(client, access, config.sample_interval), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.address, config.port)
        try:
            await site.start()
        except OSError as e:
            raise ConfigError(f"cannot listen on {config.address}:{config.port}: {e.strerror or e}") from None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        access.hosts = host_names(config.address, port)
        host = "127.0.0.1" if config.address == "localhost" else config.address
        host = f"[{host}]" if ":" in host else host
        print(f"http://{host}:{port}/login?token={access.login_token}", flush=True)
        log.info("dashboard on %s:%d for API server %s", config.address, port, client.server)
        ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await client.close()


REPORT: tuple[type[BaseException], ...] = (ConfigError, KubeconfigError, ConnectionFailed, OSError)


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_args(argv)
    setup_logging(config.verbose)
    failed = check_flags(lambda: check(config))
    if failed is not None:
        return failed
    return run_until_signalled(lambda: run(config, asyncio.Event()), report=REPORT)


if __name__ == "__main__":
    sys.exit(main())
