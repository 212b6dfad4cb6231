"""The kubelet's pod workers: watch the pods bound to this node and converge each one (plan once, then act).

One work queue of pod keys, many workers (a key is never synced twice at once). A sync reads the cached pod
and the runtime's state, asks kubelet.plan for the actions once, executes them, and hands the new state to the
status manager. Around it: the pull manager (images), the container config builder (pod → runtime configs),
the status manager (writes only changes) and the relist loop (container exits → requeue). Everything the
kubelet knows about containers lives in the runtime (labels), so a restarted kubelet adopts what runs.
"""
from __future__ import annotations

import asyncio
import logging
import copy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from pklib.client import Client
from pklib.errors import ApiError, ConnectionFailed, is_conflict, is_not_found
from pklib.events import EventRecorder
from pklib.informer import Handler, Informer
from pklib.objects import key_of
from pklib.resources import PODS, SERVICES, must_lookup
from pklib.workqueue import WorkQueue, run_workers

from kubelet.containerconfig import ContainerConfigBuilder, PodConfigOptions, ServiceLister
from kubelet.env import ConfigError
from kubelet.eviction import EVICTION_GRACE
from kubelet.plan import (ATTEMPT_LABEL, INIT_LABEL, NAME_LABEL, POD_UID_LABEL, PodActions, PodRuntime,
                          RuntimeContainer, compute_pod_actions, next_attempt)
from kubelet.probes import ProbeManager
from kubelet.pullmanager import LocalImages, PullManager
from kubelet.recorder import Recorder
from kubelet.relist import PodStore, Relister
from kubelet.runtime.interface import ContainerState, InvalidConfig, Runtime, RuntimeError_, SandboxState
from kubelet.shared import SharedReads
from kubelet.status import EVICTED_REASON, StatusInputs
from kubelet.statusmanager import StatusManager
from kubelet.tokens import TokenManager
from kubelet.volumes import VolumeManager, shows_pod_ip

GOOD_RUN_RESETS_BACKOFF = 600.0   # a container that ran this long starts its CrashLoopBackOff afresh
CONFIG_RETRY = 2.0                # a container that could not be configured is retried this often
# A pod whose volumes cannot be set up yet (a claim the PV controller is binding right now, a ConfigMap applied just
# after it) is retried after MOUNT_RETRY s, twice that the next time, and so on up to CONFIG_RETRY: Kubernetes' kubelet
# checks a pod's mounts every 300 ms while it waits for them.
MOUNT_RETRY = 0.3

log = logging.getLogger("kubelet")


@dataclass
class PodWorkerConfig:
    node_name: str
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    relist_period: float = 10.0
    sync_frequency: float = 60.0      # every pod is synced at least this often (configMap/secret updates)
    workers: int = 16
    pod: PodConfigOptions = field(default_factory=PodConfigOptions)
    local_images: LocalImages = field(default_factory=LocalImages)
    network_probes: bool = True       # False on hollow nodes: httpGet/tcpSocket probes and hooks pass unsent


class PodSource(Protocol):
    """The pods bound to this node: an Informer with a spec.nodeName field selector, or one node's share of
    an informer several hollow nodes use (kubelet/hollow.py)."""
    @property
    def store(self) -> PodStore: ...
    @property
    def synced(self) -> asyncio.Event: ...
    def add_handler(self, handler: Handler) -> None: ...
    async def run(self) -> None: ...


async def _nothing() -> None:
    return None


def grace_period(pod: dict[str, Any]) -> float:
    g = pod["metadata"].get("deletionGracePeriodSeconds")
    if g is None:
        g = pod["spec"].get("terminationGracePeriodSeconds", 30)
    return float(g)


SERVICES_SYNC_WAIT = 10.0  # a pod sync waits this long for the Service informer's first list, then is retried


class PodWorkers:
    def __init__(self, client: Client, node_ip: str, runtime: Runtime, volumes: VolumeManager,
                 cfg: PodWorkerConfig, pods: PodSource | None = None, recorder: Recorder | None = None,
                 services: ServiceLister | None = None) -> None:
        self.client = client
        self.node_ip = node_ip
        self.runtime = runtime
        self.volumes = volumes
        self.cfg = cfg
        self.pods: PodSource = pods or Informer(client, PODS, field_selector=f"spec.nodeName={cfg.node_name}")
        self.queue = WorkQueue("kubelet-pods")
        self.recorder: Recorder = recorder or EventRecorder(client, "kubelet", host=cfg.node_name)
        self.probes = ProbeManager(runtime, self.queue.add, self._probe_failed, network=cfg.network_probes)
        self.pulls = PullManager(runtime.images, self.recorder, cfg.local_images, cfg.backoff_base, cfg.backoff_max,
                                 inline=runtime.in_memory, secrets=lambda ns, name: self._get(ns, "secrets", name))
        self.tokens = TokenManager(client)
        # Services for the pods' environment variables: from a Service informer (the kubelet's service lister in
        # Kubernetes), not a LIST per pod start; hollow nodes pass their process's shared one
        self.services: Informer | None = None if services else Informer(client, SERVICES)
        self.configs = ContainerConfigBuilder(cfg.pod, volumes, lambda: self.node_ip, self._get,
                                              services or self._services_of, self.tokens.token)
        self.status = StatusManager(client, self.pulls.image_id)
        self.relister = Relister(runtime, self.pods.store, volumes, self.queue.add, self._remove_gone_pod,
                                 cfg.relist_period, cfg.sync_frequency)
        self._delays: dict[tuple[str, str], float] = {}              # (uid, container) -> CrashLoopBackOff delay
        self._waiting: dict[tuple[str, str], tuple[str, str]] = {}   # (uid, container) -> waiting reason/message
        self._refreshed: dict[str, float] = {}                       # uid -> when its API volumes were rewritten
        self._mount_retry: dict[str, float] = {}                     # uid -> the wait before its next mount try
        self._evicted: dict[str, str] = {}                           # uid -> why the eviction manager evicted it
        self._admitted: set[str] = set()                             # uids allowed to start (admission passed)
        # why a pod that has not started yet may not start here (None: it may); the eviction manager's admission
        self.admit: Callable[[dict[str, Any]], str | None] = lambda pod: None
        self._reads: SharedReads[tuple[str, str, str], dict[str, Any] | None] = SharedReads(self._fetch)
        handler = Handler(lambda p: self.queue.add(key_of(p)), self._pod_updated, self._pod_deleted)
        self.pods.add_handler(handler)

    async def run(self, ready: asyncio.Event, watch_pods: bool = True) -> None:
        """`watch_pods` False: the pod source is run by its owner (hollow nodes share one)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.recorder.run(), name="kubelet:events")
            if watch_pods:
                tg.create_task(self.pods.run(), name="kubelet:pods")
            if self.services is not None:
                tg.create_task(self.services.run(), name="kubelet:services")
            await self.pods.synced.wait()
            tg.create_task(run_workers(self.queue, self.sync, self.cfg.workers, "kubelet-pods"), name="kubelet:work")
            tg.create_task(self.relister.run(), name="kubelet:relist")
            ready.set()

    def _pod_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Requeue, unless the update is only the echo of our own status write (that would sync every pod twice)."""
        if not self.status.is_own_echo(old, new):
            self.queue.add(key_of(new))

    def _pod_deleted(self, pod: dict[str, Any]) -> None:
        """Gone from the API (or bound elsewhere now): the relist tears down what is left of it, now."""
        self.queue.add(key_of(pod))
        self.relister.wake()

    def _probe_failed(self, pod: dict[str, Any], container: str, message: str) -> None:
        self.recorder.warning(pod, "Unhealthy", message)

    async def _get(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap or Secret a pod uses; pods that ask for the same one at once share one GET."""
        return await self._reads.get((namespace, plural, name))

    async def _fetch(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        namespace, plural, name = key
        try:
            return await self.client.get(must_lookup(plural), name, namespace or None)
        except ApiError as e:
            if is_not_found(e):
                return None
            raise

    async def _services_of(self, namespace: str) -> list[dict[str, Any]]:
        informer = self.services
        if informer is None:
            return []
        if not informer.has_synced:  # a pod started before the first list would miss its Services' variables
            try:
                await informer.wait_synced(SERVICES_SYNC_WAIT)
            except TimeoutError:
                raise ConnectionFailed("the kubelet has no list of Services yet (the API server does not "
                                       "answer?): a pod's environment variables need it") from None
        return list(informer.store.by_index("namespace", namespace))

    # --- runtime state ----------------------------------------------------------------------------------

    async def runtime_state(self, uid: str) -> PodRuntime:
        # only this pod's sandboxes and their containers are read (a burst of new pods stays linear)
        sandboxes = sorted(await self.runtime.list_sandboxes(uid), key=lambda s: s.created_at)
        if not sandboxes:
            return PodRuntime()  # a pod new here: containers live in a sandbox, none to list
        newest = sandboxes[-1]
        rt = PodRuntime(sandbox_id=newest.id, sandbox_ready=newest.state == SandboxState.READY, ip=newest.ip,
                        stale_sandboxes=[s.id for s in sandboxes[:-1]])
        for c in await self.runtime.list_containers(newest.id):
            rt.containers.append(RuntimeContainer(
                id=c.id, name=c.labels.get(NAME_LABEL, c.name), init=c.labels.get(INIT_LABEL) == "true",
                attempt=int(c.labels.get(ATTEMPT_LABEL, "0")), state=c.state, exit_code=c.exit_code,
                reason=c.reason, created_at=c.created_at, started_at=c.started_at, finished_at=c.finished_at,
                image=c.image))
        return rt

    # --- sync -------------------------------------------------------------------------------------------

    async def sync(self, key: Any) -> None:
        cached = self.pods.store.get(str(key))
        if cached is None:
            return  # gone from the API: the relist loop removes what is left of it
        pod = copy.deepcopy(cached)
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp"):
            await self.terminate(pod)
            return
        rt = await self.runtime_state(uid)
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if terminal or uid in self._evicted:
            # terminal for good (Kubernetes never runs such a pod again): only make sure nothing is left running
            if rt.sandbox_ready:
                await self._stop_all(pod, rt, EVICTION_GRACE if uid in self._evicted else grace_period(pod))
                await self.runtime.stop_sandbox(rt.sandbox_id or "")
            self.probes.remove_pod(uid)
            if not terminal:   # evicted: Failed, with the reason
                await self.write_status(pod, await self.runtime_state(uid), {})
            return
        if uid not in self._admitted and rt.sandbox_id is None and not rt.containers:
            refusal = self.admit(pod)
            if refusal is not None:   # Kubernetes' rejected pod: Failed, reason Evicted, never started
                self._evicted[uid] = refusal
                self.recorder.warning(pod, EVICTED_REASON, refusal)
                await self.write_status(pod, rt, {})
                return
        self._admitted.add(uid)
        now = datetime.now(timezone.utc)
        for c in rt.containers:
            ran = (c.finished_at - c.started_at).total_seconds() if c.started_at and c.finished_at else 0.0
            if ran > GOOD_RUN_RESETS_BACKOFF:
                self._delays.pop((uid, c.name), None)
        delays = {s["name"]: self._delays.get((uid, s["name"]), self.cfg.backoff_base)
                  for s in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]}
        actions = compute_pod_actions(pod, rt, now, delays, self.probes.kills(uid))
        if not actions.idle:
            await self.act(pod, rt, actions)
            # the new state for probes and status; the plan's back-offs still hold (nothing acted on them)
            rt = await self.runtime_state(uid)
        self.probes.sync(pod, rt, str(key))
        await self._refresh_volumes(pod, rt)
        if actions.backoff:
            self.queue.add_after(key, min(actions.backoff.values()) + 0.05)
        await self.write_status(pod, rt, actions.backoff)

    async def act(self, pod: dict[str, Any], rt: PodRuntime, actions: PodActions) -> None:
        uid = pod["metadata"]["uid"]
        for sid in actions.remove_sandboxes:
            await self.runtime.remove_sandbox(sid)
        if actions.kill_pod and rt.sandbox_id:
            await self._stop_all(pod, rt, grace_period(pod))
            await self.runtime.stop_sandbox(rt.sandbox_id)
        starting = bool(actions.start_init or actions.start or actions.start_ephemeral)
        volumes: dict[str, Path] | ConfigError | None = None
        if actions.create_sandbox:
            if rt.sandbox_id:
                await self.runtime.remove_sandbox(rt.sandbox_id)
            self.probes.remove_pod(uid)
            # Kubernetes mounts a pod's volumes before it makes the sandbox: here the two go side by side, unless a
            # volume shows the pod's IP (downwardAPI status.podIP), which is known once the sandbox is made
            early = starting and not shows_pod_ip(pod)
            made, early_volumes = await asyncio.gather(
                self.runtime.run_sandbox(self.configs.sandbox_config(pod)),
                self._setup_volumes(pod, "") if early else _nothing(), return_exceptions=True)
            if isinstance(made, RuntimeError_):
                self.recorder.warning(pod, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {made}")
            for outcome in (made, early_volumes):
                if isinstance(outcome, BaseException) and not isinstance(outcome, ConfigError):
                    raise outcome  # retried with backoff by the work queue
            assert isinstance(made, str)
            volumes = early_volumes if isinstance(early_volumes, (dict, ConfigError)) else None
            rt = PodRuntime(sandbox_id=made, sandbox_ready=True, ip=(await self.runtime.sandbox_status(made)).ip)
        else:
            for cid, why in actions.kill.items():
                if why != "not started":
                    self.recorder.normal(pod, "Killing", why)
                await self.runtime.stop_container(cid, grace_period(pod))
            for cid in actions.remove:
                await self.runtime.remove_container(cid)
        if not starting:
            return
        if volumes is None:
            # once per sync, before any container of it starts: containers starting together share the result
            volumes = await self._setup_volumes(pod, rt.ip)
        if isinstance(volumes, ConfigError):
            for name in ([actions.start_init] if actions.start_init else actions.start + actions.start_ephemeral):
                self._waiting[(uid, name)] = ("CreateContainerConfigError", str(volumes))
            self.recorder.warning(pod, "FailedMount", f"Error: {volumes}")
            retry = self._mount_retry.get(uid, MOUNT_RETRY)
            self._mount_retry[uid] = min(retry * 2, CONFIG_RETRY)
            self.queue.add_after(key_of(pod), retry)
            return
        self._mount_retry.pop(uid, None)
        if actions.start_init:
            await self.start_container(pod, rt, volumes, actions.start_init, init=True)
        if actions.start:
            # app containers start together, as in Kubernetes
            await asyncio.gather(*(self.start_container(pod, rt, volumes, n, init=False) for n in actions.start))
        for name in actions.start_ephemeral:
            await self.start_container(pod, rt, volumes, name, init=False)

    async def _setup_volumes(self, pod: dict[str, Any], pod_ip: str) -> dict[str, Path] | ConfigError:
        try:
            return await self.configs.setup_volumes(pod, pod_ip)
        except ConfigError as e:
            return e

    async def _stop_all(self, pod: dict[str, Any], rt: PodRuntime, grace: float) -> None:
        running = [c for c in rt.containers if c.state in (ContainerState.RUNNING, ContainerState.CREATED)]
        await asyncio.gather(*(self._stop_one(pod, c, rt.ip, grace) for c in running))

    async def _stop_one(self, pod: dict[str, Any], c: RuntimeContainer, pod_ip: str, grace: float) -> None:
        """preStop hook (exec or httpGet), then SIGTERM; SIGKILL once the grace period (hook included) is over."""
        spec = next((s for s in pod["spec"]["containers"] if s["name"] == c.name), None)
        pre_stop = ((spec or {}).get("lifecycle") or {}).get("preStop")
        loop = asyncio.get_running_loop()
        started = loop.time()
        if spec and pre_stop and c.state == ContainerState.RUNNING and grace >= 1:
            ok, message = await self.probes.check(spec, c.id, pod_ip, {**pre_stop, "timeoutSeconds": int(grace)})
            if not ok:
                self.recorder.warning(pod, "FailedPreStopHook", f"PreStopHook failed: {message}")
        await self.runtime.stop_container(c.id, max(0.0, grace - (loop.time() - started)))

    def _config_failed(self, pod: dict[str, Any], name: str, reason: str, error: Exception) -> None:
        self._waiting[(pod["metadata"]["uid"], name)] = (reason, str(error))
        self.recorder.warning(pod, "Failed", f"Error: {error}")
        self.queue.add_after(key_of(pod), CONFIG_RETRY)

    async def start_container(self, pod: dict[str, Any], rt: PodRuntime, volumes: dict[str, Path], name: str,
                              init: bool) -> None:
        uid = pod["metadata"]["uid"]
        specs = pod["spec"].get("initContainers") or [] if init else (
            pod["spec"]["containers"] + (pod["spec"].get("ephemeralContainers") or []))
        spec = next(s for s in specs if s["name"] == name)
        pulled = await self.pulls.ensure(pod, spec)
        if not pulled.ready:
            if pulled.waiting:
                self._waiting[(uid, name)] = pulled.waiting
            if pulled.retry_after is not None:
                self.queue.add_after(key_of(pod), pulled.retry_after)
            return
        attempt = next_attempt(pod, rt, name, init)
        try:
            config = await self.configs.container_config(pod, spec, rt.ip, volumes)
        except (ConfigError, RuntimeError_) as e:
            self._config_failed(pod, name, "CreateContainerConfigError", e)
            return
        config.labels = {POD_UID_LABEL: uid, NAME_LABEL: name, INIT_LABEL: "true" if init else "false",
                         ATTEMPT_LABEL: str(attempt)}
        if target := spec.get("targetContainerName"):  # kubectl debug --target: see that container's processes
            running = rt.latest(target, False)
            if running is not None and running.state == ContainerState.RUNNING:
                config.pid_namespace_of = running.id
        try:
            cid = await self.runtime.create_container(rt.sandbox_id or "", config)
        except RuntimeError_ as e:
            # a config the runtime refuses (runAsNonRoot with a root image, say) is the user's to fix
            reason = "CreateContainerConfigError" if isinstance(e, InvalidConfig) else "CreateContainerError"
            self._config_failed(pod, name, reason, e)
            return
        self.recorder.normal(pod, "Created", f"Created container {name}")
        try:
            await self.runtime.start_container(cid)
        except RuntimeError_ as e:
            self._waiting[(uid, name)] = ("RunContainerError", str(e))
            self.recorder.warning(pod, "Failed", f"Error: {e}")
            return
        self._waiting.pop((uid, name), None)
        self.recorder.normal(pod, "Started", f"Started container {name}")
        post_start = (spec.get("lifecycle") or {}).get("postStart")
        if post_start:
            # like Kubernetes: the hook runs right after the start; if it fails, the container is killed
            ok, message = await self.probes.check(spec, cid, rt.ip, {**post_start, "timeoutSeconds": 30})
            if not ok:
                self.recorder.warning(pod, "FailedPostStartHook", f"PostStartHook failed: {message}")
                await self.runtime.stop_container(cid, grace_period(pod))
        if attempt > 0:  # a restart: the next one waits twice as long
            delay = self._delays.get((uid, name), self.cfg.backoff_base)
            self._delays[(uid, name)] = min(delay * 2, self.cfg.backoff_max)

    async def _refresh_volumes(self, pod: dict[str, Any], rt: PodRuntime) -> None:
        """Bring configMap/secret/downwardAPI contents of a running pod up to date, at most once a sync period."""
        uid = pod["metadata"]["uid"]
        loop = asyncio.get_running_loop()
        if not rt.sandbox_ready or not rt.containers:
            return
        if uid not in self._refreshed:
            self._refreshed[uid] = loop.time()  # the volumes were just written when the containers started
            return
        if loop.time() - self._refreshed[uid] < self.cfg.sync_frequency:
            return
        self._refreshed[uid] = loop.time()
        try:
            await self.configs.setup_volumes(pod, rt.ip, refresh_only=True)
        except ConfigError as e:
            log.info("%s: volumes not refreshed: %s", key_of(pod), e)  # keep the last content, as Kubernetes does

    def evict(self, pod: dict[str, Any], message: str) -> None:
        """Stop the pod for good and report it Failed with reason Evicted (the eviction manager's decision)."""
        self._evicted[pod["metadata"]["uid"]] = message
        self.recorder.warning(pod, EVICTED_REASON, message)
        self.queue.add(key_of(pod))

    def active_pods(self) -> list[dict[str, Any]]:
        """The pods of this node that may still run: neither terminal, nor being deleted, nor evicted."""
        return [p for p in self.pods.store.list() if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                and not p["metadata"].get("deletionTimestamp") and p["metadata"]["uid"] not in self._evicted]

    async def write_status(self, pod: dict[str, Any], rt: PodRuntime, backoff: dict[str, float]) -> None:
        uid = pod["metadata"]["uid"]
        waiting = {n: v for (u, n), v in self._waiting.items() if u == uid}
        inputs = StatusInputs(host_ip=self.node_ip, probes=self.probes.view(uid), waiting=waiting, backoff=backoff,
                              image_ids=await self.status.image_ids(pod), evicted=self._evicted.get(uid))
        await self.status.write(pod, rt, inputs)

    # --- deletion and cleanup -----------------------------------------------------------------------------

    async def terminate(self, pod: dict[str, Any]) -> None:
        """preStop, SIGTERM, up to the grace period, SIGKILL; tear down; finish the deletion in the API."""
        meta = pod["metadata"]
        uid = meta["uid"]
        rt = await self.runtime_state(uid)
        self.probes.remove_pod(uid)
        for c in rt.containers:
            if c.state == ContainerState.RUNNING:
                self.recorder.normal(pod, "Killing", f"Stopping container {c.name}")
        await self._stop_all(pod, rt, grace_period(pod))
        await self.teardown(uid)
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": uid})
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    async def _remove_gone_pod(self, uid: str) -> None:
        self.probes.remove_pod(uid)
        await self.teardown(uid)

    async def teardown(self, uid: str) -> None:
        for s in await self.runtime.list_sandboxes(uid):
            await self.runtime.remove_sandbox(s.id)
        await asyncio.to_thread(self.volumes.teardown, uid)
        for table in (self._delays, self._waiting):
            for k in [k for k in table if k[0] == uid]:
                del table[k]
        self.pulls.forget(uid)
        self.relister.forget(uid)
        self.status.forget(uid)
        self._refreshed.pop(uid, None)
        self._mount_retry.pop(uid, None)
        self._evicted.pop(uid, None)
        self._admitted.discard(uid)
        self.tokens.forget(uid)
