"""`pkube scheduler`: assigns pending pods to nodes.

    pkube scheduler --kubeconfig FILE | --server URL --token T [--leader-elect]
                    [--score-weights least-allocated=1,pod-topology-spread=2,...]
                    [--percentage-of-nodes-to-score 0..100] [--parallel-bindings N]

With --leader-elect the caches are filled at once (a warm standby), but only the holder
of the kube-system/kube-scheduler Lease schedules; losing the Lease exits the process
(its supervisor restarts it as a standby), like Kubernetes.
"""
from __future__ import annotations

import argparse
import asyncio
import logging

from aiohttp import web

from pklib.client import Client
from pklib.component import (ConfigError, add_client_flags, add_leader_election_flags, check_flags, close_all,
                             keep_leading, leader_elector, make_client as _make_client, run_until_signalled,
                             serve_http, setup_logging)
from pklib.errors import ConnectionFailed
from pklib.events import EventRecorder
from pklib.informer import InformerFactory
from pklib.leaderelection import LeaderElector

from . import metrics
from .algorithm import parse_weights
from .scheduler import DEFAULT_SCHEDULER_NAME, Options, Scheduler

log = logging.getLogger("scheduler")

LEASE_NAME = "kube-scheduler"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkube scheduler", description="Assigns pending pods to nodes.")
    add_client_flags(p)
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME,
                   help="schedule pods whose spec.schedulerName is this")
    p.add_argument("--score-weights", default="",
                   help="NAME=INT,... for least-allocated, balanced-allocation, taint-toleration, node-affinity, "
                        "pod-topology-spread, inter-pod-affinity (owner-spread: old name of pod-topology-spread)")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                   help="stop filtering after this share of nodes fits (0 = adaptive, as Kubernetes)")
    p.add_argument("--parallel-bindings", type=int, default=64, help="bindings in flight at once")
    p.add_argument("--bind-address", default="127.0.0.1", help="address of the /healthz and /metrics endpoint")
    p.add_argument("--port", type=int, default=0, help="port of /healthz and /metrics (0 = not served)")
    add_leader_election_flags(p, "schedule")
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
    return _make_client(config, "pkube-scheduler")


async def run(config: argparse.Namespace, ready: asyncio.Event) -> None:
    """Run until cancelled; `ready` is set once the caches are filled and this instance schedules."""
    options = options_from(config)
    client = make_client(config)
    # Unpaged lists: the apiserver answers each from its watch cache in one response, so that a big cluster's
    # pods and nodes are in the caches (and the first pod scheduled) sooner than page by page from etcd.
    informers = InformerFactory(client, list_page=None)
    recorder = EventRecorder(client, options.scheduler_name)
    scheduler = Scheduler(client, recorder, informers, options)
    elector: LeaderElector | None = None
    leading = metrics.LeadingFlag(not config.leader_elect)
    runner: web.AppRunner | None = None

    def lost() -> None:
        leading.value = False
        log.error("lost the leader lease; exiting")

    try:
        if config.port:
            runner = await serve_http(metrics.app(scheduler, leading), config.bind_address, config.port)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(recorder.run(), name="events")
            informers.start()
            if config.leader_elect:
                # The caches fill while we wait for the Lease (a standby stays warm).
                elector = leader_elector(client, config, LEASE_NAME)
                await asyncio.gather(informers.wait_synced(), elector.acquire())
                leading.value = True
            else:
                await informers.wait_synced()
            tg.create_task(scheduler.run(), name="scheduler")
            log.info("scheduling as %s", options.scheduler_name)
            ready.set()
            if elector is not None:
                await keep_leading(elector, lost)
    finally:
        await close_all(runner.cleanup if runner else None, elector.release if elector else None, informers.stop,
                        client.close)


# What ends the process with one `error: ...` line instead of a traceback (also used by `pkube group`).
REPORT: tuple[type[BaseException], ...] = (ConnectionFailed, ConfigError)


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_args(argv)
    setup_logging(config.verbose)

    def check() -> None:
        options_from(config)
        make_client(config)  # a missing or broken kubeconfig is reported here, in one line

    failed = check_flags(check)
    if failed is not None:
        return failed
    return run_until_signalled(lambda: run(config, asyncio.Event()), report=REPORT)
