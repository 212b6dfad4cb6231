"""`pkube kubelet`: the node agent.

    pkube kubelet [--node-name N] [--root-dir D] [--bridge B ...] --kubeconfig FILE | --server URL --token T
    pkube kubelet --hollow --count N [--name-prefix hollow-node] [--cpu 4] [--memory 16Gi] [--max-pods 110] ...

The default mode is the real kubelet: it registers this machine as a Node and runs the pods bound to it with
runc (kubelet/run.py wires kubelet/nodestatus.py and kubelet/podworkers.py; the flags are in kubelet/flags.py).
`--hollow` runs N nodes in this process (kubemark-style, for scale tests): the same NodeAgent and PodWorkers,
each node on its own in-memory fake runtime (kubelet/hollow.py).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING

from pklib import component
from pklib.client import Client
from pklib.component import ConfigError, add_client_flags, check_flags, run_until_signalled, setup_logging
from pklib.errors import ApiError, ConnectionFailed
from pklib.quantity import QuantityError, parse_quantity

from .flags import add_real_flags, check_real_config
from .runtime.interface import RuntimeError_

if TYPE_CHECKING:
    from .hollow import HollowConfig

# The real node (.run: runc, conmon, pod networking, images, the kubelet API) and the hollow one (.hollow: a fake
# runtime) are imported only by the mode that runs: a hollow process then holds none of the real node's modules
# (pyroute2, the image store, aiohttp's server), which is most of a Python process's memory before any node.

log = logging.getLogger("kubelet")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkube kubelet", description="The pkube node agent.")
    add_client_flags(p)
    add_real_flags(p)
    hollow = p.add_argument_group("hollow nodes (scale testing)")
    hollow.add_argument("--hollow", action="store_true", help="run fake nodes that start no containers")
    hollow.add_argument("--count", type=int, default=1, help="how many hollow nodes")
    hollow.add_argument("--name-prefix", default="hollow-node", help="nodes are named PREFIX-0 .. PREFIX-(N-1)")
    hollow.add_argument("--cpu", default="4", help="cpu capacity of each node")
    hollow.add_argument("--memory", default="16Gi", help="memory capacity of each node")
    p.add_argument("--max-pods", type=int, default=110, help="pods capacity of each node")
    hollow.add_argument("--node-lease-duration-seconds", type=int, default=40)
    hollow.add_argument("--node-lease-renew-interval", type=float, default=10.0,
                        help="seconds between two renewals of one node's Lease")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def hollow_config(config: argparse.Namespace) -> HollowConfig:
    from .hollow import HollowConfig
    if config.count < 1:
        raise ConfigError("--count must be at least 1")
    if config.max_pods < 1:
        raise ConfigError("--max-pods must be at least 1")
    for flag, value in (("--cpu", config.cpu), ("--memory", config.memory)):
        try:
            if parse_quantity(value).value <= 0:
                raise ConfigError(f"{flag} must be positive")
        except QuantityError as e:
            raise ConfigError(f"{flag} {value!r}: {e}") from None
    if config.node_lease_renew_interval <= 0 or config.node_lease_duration_seconds <= 0:
        raise ConfigError("lease duration and renew interval must be positive")
    return HollowConfig(count=config.count, name_prefix=config.name_prefix, cpu=config.cpu, memory=config.memory,
                        max_pods=config.max_pods, lease_duration=config.node_lease_duration_seconds,
                        renew_interval=config.node_lease_renew_interval, root_parent=config.root_dir)


def make_client(config: argparse.Namespace) -> Client:
    return component.make_client(config, "pkube-kubelet")


async def run(config: argparse.Namespace, ready: asyncio.Event) -> None:
    client = make_client(config)
    if not config.hollow:
        from .run import run_real
        try:
            await run_real(client, config, ready)
        finally:
            await client.close()
        return
    from .hollow import HollowKubelet
    cfg = hollow_config(config)
    try:
        await HollowKubelet(client, cfg).run(ready)
    finally:
        await client.close()


# An unreachable/refusing API server is one line and exit 1, not a traceback (also used by `pkube group`).
REPORT: tuple[type[BaseException], ...] = (ApiError, ConnectionFailed)


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_args(argv)
    setup_logging(config.verbose)
    if config.cleanup:
        from .run import cleanup_node
        try:
            asyncio.run(cleanup_node(config))
        except (RuntimeError_, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0

    def check() -> None:
        make_client(config)
        if config.hollow:
            hollow_config(config)
        else:
            check_real_config(config)

    failed = check_flags(check, (ValueError,))
    if failed is not None:
        return failed
    # on uvloop (run_event_loop): an idle node agent wakes several times a second (relist, probes), each cheaper
    return run_until_signalled(lambda: run(config, asyncio.Event()), report=REPORT)
