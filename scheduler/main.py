"""`pkube scheduler`: assigns pending pods to nodes.

    pkube scheduler --kubeconfig FILE | --server URL --token T [--leader-elect]
                    [--score-weights least-allocated=1,owner-spread=2,...]
                    [--percentage-of-nodes-to-score 0..100] [--parallel-bindings N]

With --leader-elect the caches are filled at once (a warm standby), but only the holder
of the kube-system/kube-scheduler Lease schedules; losing the Lease exits the process
(its supervisor restarts it as a standby), like Kubernetes.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from pklib.client import Client
from pklib.errors import ConnectionFailed
from pklib.events import EventRecorder
from pklib.informer import InformerFactory
from pklib.kubeconfig import KubeconfigError
from pklib.leaderelection import LeaderElector

from . import metrics
from .algorithm import parse_weights
from .scheduler import DEFAULT_SCHEDULER_NAME, Options, Scheduler

log = logging.getLogger("scheduler")

LEASE_NAME = "kube-scheduler"


class ConfigError(Exception):
    pass


class LostLeadership(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkube scheduler", description="Assigns pending pods to nodes.")
    p.add_argument("--kubeconfig", help="kubeconfig file to reach the API server")
    p.add_argument("--server", help="API server URL (instead of --kubeconfig)")
    p.add_argument("--token", help="bearer token for --server")
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                   help="schedule pods whose spec.schedulerName is this")
    p.add_argument("--score-weights", default="",
                   help="NAME=INT,... for least-allocated, balanced-allocation, taint-toleration, owner-spread")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                   help="stop filtering after this share of nodes fits (0 = adaptive, as Kubernetes)")
    p.add_argument("--parallel-bindings", type=int, default=64, help="bindings in flight at once")
    p.add_argument("--bind-address", default="127.0.0.1", help="address of the /healthz and /metrics endpoint")
    p.add_argument("--port", type=int, default=0, help="port of /healthz and /metrics (0 = not served)")
    p.add_argument("--leader-elect", action="store_true", help="schedule only while holding the leader Lease")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0)
    p.add_argument("--leader-elect-identity", default=None, help="defaults to <hostname>_<uuid>")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def options_from(config: argparse.Namespace) -> Options:
    try:
        weights = parse_weights(config.score_weights)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not 0 <= config.percentage_of_nodes_to_score <= 100:
        raise ConfigError("--percentage-of-nodes-to-score must be between 0 and 100")
    if config.parallel_bindings < 1:
        raise ConfigError("--parallel-bindings must be at least 1")
    if not 0 <= config.port <= 65535:
        raise ConfigError("--port must be between 0 and 65535")
    return Options(weights, config.percentage_of_nodes_to_score, config.scheduler_name, config.parallel_bindings)


def make_client(config: argparse.Namespace) -> Client:
    if config.server:
        return Client(config.server, config.token, user_agent="pkube-scheduler")
    if config.token:
        raise ConfigError("--token needs --server")
    return Client.from_kubeconfig(config.kubeconfig, user_agent="pkube-scheduler")


async def run(config: argparse.Namespace, ready: asyncio.Event) -> None:
    """Run until cancelled; `ready` is set once the caches are filled and this instance schedules."""
    options = options_from(config)
    client = make_client(config)
    informers = InformerFactory(client)
    recorder = EventRecorder(client, options.scheduler_name)
    scheduler = Scheduler(client, recorder, informers, options)
    elector: LeaderElector | None = None
    leading = metrics.LeadingFlag(not config.leader_elect)
    runner: web.AppRunner | None = None
    try:
        if config.port:
            runner = web.AppRunner(metrics.app(scheduler, leading), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, config.bind_address, config.port).start()
            except OSError as e:
                raise ConfigError(f"cannot serve metrics on {config.bind_address}:{config.port}: {e.strerror}") from None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(recorder.run(), name="events")
            informers.start()
            await informers.wait_synced()
            if config.leader_elect:
                elector = LeaderElector(client, LEASE_NAME, "kube-system", config.leader_elect_identity,
                                        config.leader_elect_lease_duration, config.leader_elect_renew_deadline,
                                        config.leader_elect_retry_period)
                await elector.acquire()
                leading.value = True
            tg.create_task(scheduler.run(), name="scheduler")
            log.info("scheduling as %s", options.scheduler_name)
            ready.set()
            if elector is not None:
                await elector.keep_renewing()
                leading.value = False
                raise LostLeadership()
    finally:
        if runner is not None:
            await runner.cleanup()
        if elector is not None:
            await elector.release()
        await informers.stop()
        await client.close()


def _leaf_errors(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in _leaf_errors(sub)]
    return [e]


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if config.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options_from(config)
        make_client(config)  # a missing or broken kubeconfig is reported here, in one line
    except (ConfigError, KubeconfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def serve() -> int:
        task = asyncio.create_task(run(config, asyncio.Event()))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            return 0
        except Exception as e:  # noqa: BLE001 - turned into one line + exit code below
            for leaf in _leaf_errors(e):
                if isinstance(leaf, LostLeadership):
                    log.error("lost the leader lease; exiting")
                    return 1
                if isinstance(leaf, (ConnectionFailed, ConfigError)):
                    print(f"error: {leaf}", file=sys.stderr)
                    return 1
            raise
        return 0

    return asyncio.run(serve())
