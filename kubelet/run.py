"""The real kubelet's wiring: node registration → podCIDR → runc runtime → pod workers, heartbeat and the
kubelet API; and `--cleanup`, which undoes what such a kubelet set up on the machine."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from pathlib import Path

from aiohttp import web

from images.busybox import BUSYBOX_IMAGE, ensure_busybox
from images.store import ImageStore
from pklib.client import Client
from pklib.events import EventRecorder
from pklib.hostnet import host_ip

from kubelet.containerconfig import PodConfigOptions
from kubelet.eviction import EvictionManager, observe_host
from kubelet.flags import (check_real_config, eviction_thresholds, eviction_transition_period, image_gc_policy,
                           node_labels, root_dir, runtime_config)
from kubelet.host import NodeHost
from kubelet.imagegc import ImageGCManager
from kubelet.nodestatus import HostMachine, NodeAgent, NodeConfig, runtime_version
from kubelet.network import vxlan
from kubelet.podroutes import Backend, run_pod_routes
from kubelet.podworkers import PodWorkerConfig, PodWorkers
from kubelet.pullmanager import LocalImages
from kubelet.runtime.runc import RuncRuntime, RuntimeConfig
from kubelet.server import KubeletServer, server_tls_context
from kubelet.volumes import VolumeManager

log = logging.getLogger("kubelet")


def local_images(images: ImageStore) -> LocalImages:
    """pkube.local/ images are built on this machine, never pulled; the bundled busybox is built on first use."""
    return LocalImages(prefix="pkube.local/", bundled={BUSYBOX_IMAGE: lambda: ensure_busybox(images)})


async def cleanup_node(config: argparse.Namespace) -> None:
    """Undo everything a kubelet with these flags set up on the machine; PV and hostPath data stay."""
    images = ImageStore(Path(config.image_root) if config.image_root else None)
    # the pod CIDR only matters for setting a bridge up, not for taking it down
    await RuncRuntime(runtime_config(config, RuntimeConfig().pod_cidr), images).destroy_node()
    await asyncio.to_thread(vxlan.delete_device, config.vxlan_vni)  # its routes and neighbours go with it
    volumes = VolumeManager(root_dir(config))
    for uid in volumes.pod_uids():
        volumes.teardown(uid)


async def run_real(client: Client, config: argparse.Namespace, ready: asyncio.Event) -> None:
    check_real_config(config)
    root = root_dir(config)
    root.mkdir(parents=True, exist_ok=True)
    name = config.node_name or socket.gethostname().lower()
    images = ImageStore(Path(config.image_root) if config.image_root else None)
    recorder = EventRecorder(client, "kubelet", host=name)
    evictions = EvictionManager(eviction_thresholds(config), lambda: observe_host(root, images.root), recorder,
                                lambda: node.node, period=config.eviction_monitoring_period,
                                transition_period=eviction_transition_period(config))
    node_cfg = NodeConfig(
        name=name, root_dir=root, max_pods=config.max_pods, reserved_cpu=config.system_reserved_cpu,
        reserved_memory=config.system_reserved_memory,
        node_ip=config.node_ip or await asyncio.to_thread(host_ip), labels=node_labels(config.node_labels),
        lease_duration=config.node_lease_duration_seconds, renew_interval=config.node_lease_renew_interval,
        status_interval=config.node_status_update_frequency,
        report_interval=config.node_status_report_frequency, port=config.port)
    node = NodeAgent(client, node_cfg, await asyncio.to_thread(runtime_version),
                     HostMachine(node_cfg, evictions.conditions))
    await node.register()
    cidr = await node.wait_pod_cidr()
    image_gc = ImageGCManager(images, image_gc_policy(config), recorder, lambda: node.node)
    runtime = RuncRuntime(runtime_config(config, cidr), images)
    await runtime.ensure_node()
    log.info("node %s registered (pod CIDR %s, IP %s)", name, cidr, node.ip)
    workers = PodWorkers(client, node.ip, runtime, VolumeManager(root), PodWorkerConfig(
        node_name=name, backoff_base=config.crashloop_backoff_base, backoff_max=config.crashloop_backoff_max,
        relist_period=config.relist_period, sync_frequency=config.sync_frequency, workers=config.pod_workers,
        local_images=local_images(images),
        pod=PodConfigOptions(
            cluster_dns=[ip.strip() for ip in config.cluster_dns.split(",") if ip.strip()],
            cluster_domain=config.cluster_domain, seccomp_default=config.seccomp_default,
            seccomp_dir=root / "seccomp", allocatable=dict(node.node.get("status", {}).get("allocatable") or {}))),
        recorder=recorder)
    workers.admit = evictions.admit
    host = NodeHost(name, workers.pods.store, runtime, workers.runtime_state)

    async def reclaim_images(signal: str, missing: int | None) -> None:
        """Disk pressure: delete unused images first, if the images are on the filesystem that is short."""
        if signal.startswith("imagefs.") or os.stat(root).st_dev == os.stat(images.root).st_dev:
            await asyncio.to_thread(image_gc.free_space, missing if missing is not None else 1 << 62)
    runner = None
    try:
        if config.port:
            runner = web.AppRunner(KubeletServer(host).app(), access_log=None)
            await runner.setup()
            tls = server_tls_context(config.tls_cert_file, config.tls_private_key_file, config.client_ca_file)
            await web.TCPSite(runner, config.address or node.ip, config.port, ssl_context=tls).start()
        async with asyncio.TaskGroup() as tg:
            if config.port and config.rotate_server_certificates:
                # imported only here: cryptography costs the process ~9 MB, and only a joined node rotates
                from kubelet import servingcert
                tg.create_task(servingcert.run(client, node.node, config.tls_cert_file, config.tls_private_key_file,
                                               config.client_ca_file, tls),
                               name="kubelet:serving-certificate")
            if config.rotate_certificates and config.kubeconfig:
                from kubelet import clientcert
                tg.create_task(clientcert.run(client, config.kubeconfig), name="kubelet:client-certificate")
            tg.create_task(node.heartbeat(), name="kubelet:heartbeat")
            tg.create_task(workers.run(ready), name="kubelet:pods")
            tg.create_task(image_gc.run(), name="kubelet:image-gc")
            tg.create_task(evictions.run(workers.active_pods, host.pod_usage, workers.evict, reclaim_images),
                           name="kubelet:eviction")
            if config.pod_routes:
                backend = Backend(config.network_backend, config.vxlan_vni, config.vxlan_port)
                tg.create_task(run_pod_routes(client, name, backend, node.ip, cidr, config.cluster_cidr),
                               name="kubelet:pod-routes")
    finally:
        await workers.probes.close()
        if runner is not None:
            await runner.cleanup()
