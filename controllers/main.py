"""`pkube controller-manager`: runs the workload controllers against the API server.

    pkube controller-manager --kubeconfig FILE | --server URL --token T
                             [--leader-elect] [--controllers '*,-daemonset'] [--concurrent-syncs N]

Controllers are listed in REGISTRY (a Controller subclass each, with a unique
`name`); other areas append theirs there. With --leader-elect only the holder of
the kube-system/pkube-controller-manager Lease runs controllers; losing the Lease
exits the process (the supervisor restarts it as a standby), like Kubernetes.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Sequence

from pklib.client import Client
from pklib.component import (ConfigError, add_client_flags, add_leader_election_flags, check_flags, close_all,
                             keep_leading, leader_elector, make_client as _make_client, run_until_signalled,
                             setup_logging)
from pklib.controller import Controller, ControllerContext
from pklib.errors import ConnectionFailed
from pklib.events import EventRecorder
from pklib.informer import InformerFactory
from pklib.leaderelection import LeaderElector

from .apiservice import APIServiceController
from .certificates import CSRApprovingController, CSRSigningController, TokenCleaner
from .cronjob import CronJobController
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .disruption import DisruptionController
from .endpoints import EndpointsController
from .garbagecollector import GarbageCollector
from .hpa import HorizontalPodAutoscalerController
from .job import JobController
from .metrics import ManagerState, serve
from .namespace import NamespaceController
from .nodeipam import NodeIpamController
from .nodelifecycle import NodeLifecycleController
from .persistentvolume import PersistentVolumeController
from .podgc import PodGCController
from .replicaset import ReplicaSetController, ReplicationControllerController
from .resourcequota import ResourceQuotaController
from .serviceaccounts import RootCACertPublisher, ServiceAccountsController
from .statefulset import StatefulSetController
from .ttlafterfinished import TTLAfterFinishedController

log = logging.getLogger("controller-manager")

# Every controller this binary knows; `--controllers` picks among them by name.
REGISTRY: list[type[Controller]] = [
    ReplicaSetController,
    DeploymentController,
    GarbageCollector,
    NamespaceController,
    EndpointsController,
    DaemonSetController,
    StatefulSetController,
    JobController,
    CronJobController,
    TTLAfterFinishedController,
    PersistentVolumeController,
    NodeIpamController,
    NodeLifecycleController,
    DisruptionController,
    ServiceAccountsController,
    RootCACertPublisher,
    PodGCController,
    ReplicationControllerController,
    ResourceQuotaController,
    APIServiceController,
    HorizontalPodAutoscalerController,
    CSRApprovingController,
    CSRSigningController,
    TokenCleaner,
]

LEASE_NAME = "pkube-controller-manager"


def select_controllers(spec: str, registry: Sequence[type[Controller]] | None = None) -> list[type[Controller]]:
    """Kubernetes' --controllers syntax: `*` = all, `name` enables, `-name` disables."""
    registry = list(REGISTRY if registry is None else registry)
    by_name = {c.name: c for c in registry}
    wanted: set[str] = set()
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name = item[1:] if item.startswith("-") else item
        if name != "*" and name not in by_name:
            raise ConfigError(f"unknown controller {name!r}; known: {', '.join(sorted(by_name))}")
        if item == "*":
            wanted |= set(by_name)
        elif item.startswith("-"):
            wanted.discard(name)
        else:
            wanted.add(name)
    return [c for c in registry if c.name in wanted]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkube controller-manager", description="Runs the pkube controllers.")
    add_client_flags(p)
    p.add_argument("--controllers", default="*", help="'*' for all, 'name' to enable, '-name' to disable")
    p.add_argument("--concurrent-syncs", type=int, default=5, help="workers per controller")
    add_leader_election_flags(p, "run")
    p.add_argument("--min-resync-period", type=float, default=0,
                   help="seconds between informer resyncs (0 = none; the controllers are level-triggered)")
    p.add_argument("--bind-address", default="127.0.0.1", help="address for /healthz and /metrics")
    p.add_argument("--port", type=int, default=0, help="port for /healthz and /metrics (0 = off)")
    p.add_argument("-v", "--verbose", action="store_true")
    for c in REGISTRY:
        c.add_flags(p)
    return p


def make_client(config: argparse.Namespace) -> Client:
    return _make_client(config, "pkube-controller-manager")


async def run(config: argparse.Namespace, ready: asyncio.Event) -> None:
    """Run until cancelled. `ready` is set once this instance leads (or without election) and caches synced."""
    classes = select_controllers(config.controllers)
    client = make_client(config)
    state = ManagerState()
    server = None
    if config.port:
        try:
            server = await serve(state, config.bind_address, config.port)
        except ConfigError:  # the port is taken
            await client.close()
            raise
    elector: LeaderElector | None = None
    informers: InformerFactory | None = None

    def lost() -> None:
        state.leading = False

    try:
        informers = InformerFactory(client, config.min_resync_period or None)
        # Each controller reads back what it (or another controller here) just wrote, before its watch event
        # comes: a second sync in a burst then does not conflict with the first's write (pklib.informer.Store).
        client.on_write = informers.remember
        recorder = EventRecorder(client, "controller-manager")
        ctx = ControllerContext(client, informers, recorder, config, config.concurrent_syncs)
        controllers = [cls(ctx) for cls in classes]
        state.controllers, state.informers = controllers, informers
        async with asyncio.TaskGroup() as tg:
            early: list[Controller] = []
            if config.leader_elect:
                elector = leader_elector(client, config, LEASE_NAME)
                if elector.predecessor:
                    # The successor of a process that died fills its caches while it lets the predecessor's last
                    # requests land (PREDECESSOR_SETTLE), and runs the controllers whose writes follow from the
                    # caches alone meanwhile (if nobody else can lead first); the others act once it leads. A
                    # standby waits with none.
                    informers.start()
                    if await elector.predecessor_holds():
                        early = [c for c in controllers if c.state_only]
                    for c in early:
                        tg.create_task(c.run(), name=f"controller:{c.name}")
                await elector.acquire()
            state.leading = True
            tg.create_task(recorder.run(), name="events")
            informers.start()
            for c in controllers:
                if c not in early:
                    tg.create_task(c.run(), name=f"controller:{c.name}")
            await informers.wait_synced()
            log.info("running controllers: %s", ", ".join(c.name for c in controllers))
            ready.set()
            if elector is not None:
                await keep_leading(elector, lost)
    finally:
        await close_all(elector.release if elector else None, informers.stop if informers else None,
                        server.cleanup if server else None, client.close)


# What ends the process with one `error: ...` line instead of a traceback (also used by `pkube group`).
REPORT: tuple[type[BaseException], ...] = (ConnectionFailed,)


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_args(argv)
    setup_logging(config.verbose)

    def check() -> None:
        select_controllers(config.controllers)
        if config.root_ca_file and not os.access(config.root_ca_file, os.R_OK):
            raise ConfigError(f"--root-ca-file: cannot read {config.root_ca_file}")
        if not config.server and not config.kubeconfig:
            make_client(config)  # falls back to $KUBECONFIG / defaults, or says what is missing

    failed = check_flags(check)
    if failed is not None:
        return failed
    return run_until_signalled(lambda: run(config, asyncio.Event()), report=REPORT)
