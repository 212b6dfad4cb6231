"""The real kubelet's pod workers: watch the pods bound to this node and converge each one (plan, then act).

One work queue of pod keys, many workers (a key is never synced twice at once). A sync reads the cached pod
and the runtime's state, asks kubelet.plan for the actions, executes them, and writes the status only when it
changed. A relist loop (Kubernetes' PLEG) notices container exits and requeues the pod, and cleans up
sandboxes of pods that are gone (deleted while we were down, or bound elsewhere now). Everything the kubelet
knows about containers lives in the runtime (labels), so a restarted kubelet adopts what runs.
"""
from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pklib.client import Client
from pklib.errors import ApiError, is_conflict, is_not_found
from pklib.events import EventRecorder
from pklib.informer import Handler, Informer
from pklib.objects import key_of
from pklib.quantity import QuantityError, to_bytes, to_millicores
from pklib.resources import PODS, must_lookup
from pklib.workqueue import WorkQueue, run_workers

from kubelet.env import ConfigError, build_env, expand
from images.busybox import ensure_busybox
from images.errors import ImageError
from images.store import ImageStore
from kubelet.network.podfiles import HOST_RESOLV_CONF, DNSConfig, HostAlias
from kubelet.node import NodeAgent
from kubelet.plan import (ATTEMPT_LABEL, INIT_LABEL, NAME_LABEL, POD_UID_LABEL, PodRuntime, RuntimeContainer,
                          compute_pod_actions, pod_finished)
from kubelet.probes import ProbeManager
from kubelet.runtime.interface import (ContainerConfig, ContainerState, ContainerStatus, InvalidConfig, NotFound,
                                       Resources, RuntimeError_, SandboxConfig, SandboxState, SandboxStatus,
                                       SecurityContext)
from kubelet.runtime.seccomp import localhost_path
from kubelet.runtime.runc import RuncRuntime
from kubelet.shared import SharedRead
from kubelet.status import OWNED_STATUS, StatusInputs, compute_status, same_status
from kubelet.volumes import VolumeManager

log = logging.getLogger("kubelet")

GOOD_RUN_RESETS_BACKOFF = 600.0   # a container that ran this long starts its CrashLoopBackOff afresh
CONFIG_RETRY = 2.0                # a container that could not be configured is retried this often


@dataclass
class PodWorkerConfig:
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    relist_period: float = 1.0
    sync_frequency: float = 60.0      # every pod is synced at least this often (configMap/secret updates)
    workers: int = 16
    allocatable: dict[str, str] = field(default_factory=dict)
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    seccomp_default: bool = True      # RuntimeDefault for containers that ask for no profile (--seccomp-default)
    seccomp_dir: Path | None = None   # where Localhost profiles live (<root dir>/seccomp)


def seccomp_profile(pod_sc: dict[str, Any], container_sc: dict[str, Any], default_on: bool,
                    seccomp_dir: Path | None) -> tuple[str, str]:
    """(type, Localhost profile path): the container's seccompProfile, else the pod's, else the kubelet's default
    (RuntimeDefault with --seccomp-default, else Unconfined). A Localhost name must stay inside the seccomp dir."""
    sp = container_sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
    if not isinstance(sp, dict):
        raise ConfigError(f"invalid seccompProfile {sp!r}")
    kind = sp.get("type") or ("RuntimeDefault" if default_on else "Unconfined")
    if kind in ("RuntimeDefault", "Unconfined"):
        return kind, ""
    if kind != "Localhost":
        raise ConfigError(f"unsupported seccomp profile type {kind!r}")
    if seccomp_dir is None:
        raise ConfigError("seccomp profile type Localhost: this kubelet has no seccomp profile directory")
    try:
        return kind, str(localhost_path(seccomp_dir, sp.get("localhostProfile") or ""))
    except InvalidConfig as e:
        raise ConfigError(str(e)) from None


def host_dns() -> DNSConfig:
    """The host's resolv.conf as a DNSConfig (dnsPolicy Default plus a pod's dnsConfig additions)."""
    dns = DNSConfig()
    try:
        lines = HOST_RESOLV_CONF.read_text().splitlines()
    except OSError:
        return dns
    for line in lines:
        key, *values = line.split("#", 1)[0].split() or [""]
        if key == "nameserver":
            dns.nameservers += values[:1]
        elif key == "search":
            dns.searches = values
        elif key == "options":
            dns.options += values
    return dns


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "managedFields", "generation")}


class PodWorkers:
    def __init__(self, client: Client, node: NodeAgent, runtime: RuncRuntime, images: ImageStore,
                 volumes: VolumeManager, cfg: PodWorkerConfig) -> None:
        self.client = client
        self.node = node
        self.runtime = runtime
        self.images = images
        self.volumes = volumes
        self.cfg = cfg
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={node.cfg.name}")
        self.queue = WorkQueue("kubelet-pods")
        self.recorder = EventRecorder(client, "kubelet", host=node.cfg.name)
        self.probes = ProbeManager(runtime, self.queue.add, self._probe_failed)
        self._delays: dict[tuple[str, str], float] = {}              # (uid, container) -> CrashLoopBackOff delay
        self._waiting: dict[tuple[str, str], tuple[str, str]] = {}   # (uid, container) -> waiting reason/message
        self._pull_backoff: dict[tuple[str, str], tuple[float, float]] = {}  # -> (retry at, delay)
        self._snapshot: dict[str, tuple[Any, ...]] = {}              # uid -> what the relist saw last
        self._refreshed: dict[str, float] = {}                       # uid -> when its API volumes were rewritten
        self._image_ids: dict[str, tuple[str, float]] = {}           # image ref -> (status imageID, valid until)
        self._written: dict[str, dict[str, Any]] = {}                # uid -> the status we last wrote
        # pods synced together (the periodic full sync queues them all) share one read of the runtime
        self.runtime_listing = SharedRead(self._list_runtime)
        handler = Handler(lambda p: self.queue.add(key_of(p)), self._pod_updated, lambda p: self.queue.add(key_of(p)))
        self.pods.add_handler(handler)

    async def run(self, ready: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.recorder.run(), name="kubelet:events")
            tg.create_task(self.pods.run(), name="kubelet:pods")
            await self.pods.synced.wait()
            tg.create_task(run_workers(self.queue, self.sync, self.cfg.workers, "kubelet-pods"), name="kubelet:work")
            tg.create_task(self.relist_loop(), name="kubelet:relist")
            ready.set()

    def _pod_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Requeue, unless the update is only the echo of our own status write (that would sync every pod twice)."""
        uid = new["metadata"].get("uid", "")
        if old.get("spec") == new.get("spec") and _meta(old) == _meta(new) and \
                self._written.get(uid) == new.get("status"):
            return
        self.queue.add(key_of(new))

    def _probe_failed(self, pod: dict[str, Any], container: str, message: str) -> None:
        self.recorder.warning(pod, "Unhealthy", message)

    # --- runtime state ----------------------------------------------------------------------------------

    async def _list_runtime(self) -> tuple[list[SandboxStatus], list[ContainerStatus]]:
        return await self.runtime.list_sandboxes(), await self.runtime.list_containers()

    async def runtime_state(self, uid: str) -> PodRuntime:
        all_sandboxes, all_containers = await self.runtime_listing.get()
        sandboxes = sorted((s for s in all_sandboxes if s.config.uid == uid), key=lambda s: s.created_at)
        if not sandboxes:
            return PodRuntime()
        newest = sandboxes[-1]
        rt = PodRuntime(sandbox_id=newest.id, sandbox_ready=newest.state == SandboxState.READY, ip=newest.ip,
                        stale_sandboxes=[s.id for s in sandboxes[:-1]])
        for c in (c for c in all_containers if c.sandbox_id == newest.id):
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
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            # terminal for good (Kubernetes never runs such a pod again): only make sure nothing is left running
            if rt.sandbox_ready:
                await self._stop_all(pod, rt, self._grace(pod))
                await self.runtime.stop_sandbox(rt.sandbox_id or "")
            self.probes.remove_pod(uid)
            return
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
            rt = await self.runtime_state(uid)
            actions.backoff = compute_pod_actions(pod, rt, datetime.now(timezone.utc), delays).backoff
        self.probes.sync(pod, rt, str(key))
        await self._refresh_volumes(pod, rt)
        if actions.backoff:
            self.queue.add_after(key, min(actions.backoff.values()) + 0.05)
        await self.write_status(pod, rt, actions.backoff)

    async def act(self, pod: dict[str, Any], rt: PodRuntime, actions: Any) -> None:
        uid = pod["metadata"]["uid"]
        for sid in actions.remove_sandboxes:
            await self.runtime.remove_sandbox(sid)
        if actions.kill_pod and rt.sandbox_id:
            await self._stop_all(pod, rt, self._grace(pod))
            await self.runtime.stop_sandbox(rt.sandbox_id)
        if actions.create_sandbox:
            if rt.sandbox_id:
                await self.runtime.remove_sandbox(rt.sandbox_id)
            self.probes.remove_pod(uid)
            try:
                sid = await self.runtime.run_sandbox(self._sandbox_config(pod))
            except RuntimeError_ as e:
                self.recorder.warning(pod, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
                raise  # retried with backoff by the work queue
            rt = PodRuntime(sandbox_id=sid, sandbox_ready=True, ip=(await self.runtime.sandbox_status(sid)).ip)
        else:
            for cid, why in actions.kill.items():
                if why != "not started":
                    self.recorder.normal(pod, "Killing", why)
                await self.runtime.stop_container(cid, self._grace(pod))
            for cid in actions.remove:
                await self.runtime.remove_container(cid)
        if not (actions.start_init or actions.start):
            return
        try:
            # once per sync, before any container of it starts: containers starting together share the result
            volumes = await self._setup_volumes(pod, rt.ip)
        except ConfigError as e:
            for name in ([actions.start_init] if actions.start_init else actions.start):
                self._waiting[(uid, name)] = ("CreateContainerConfigError", str(e))
            self.recorder.warning(pod, "FailedMount", f"Error: {e}")
            self.queue.add_after(key_of(pod), CONFIG_RETRY)
            return
        if actions.start_init:
            await self.start_container(pod, rt, volumes, actions.start_init, init=True)
        if actions.start:
            # app containers start together, as in Kubernetes
            await asyncio.gather(*(self.start_container(pod, rt, volumes, n, init=False) for n in actions.start))

    def _grace(self, pod: dict[str, Any]) -> float:
        g = pod["metadata"].get("deletionGracePeriodSeconds")
        if g is None:
            g = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(g)

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

    def _sandbox_config(self, pod: dict[str, Any]) -> SandboxConfig:
        meta, spec = pod["metadata"], pod["spec"]
        hostname = (spec.get("hostname") or meta["name"])[:63].rstrip("-.")
        fqdn = ""
        if spec.get("subdomain"):
            fqdn = f"{hostname}.{spec['subdomain']}.{meta['namespace']}.svc.{self.cfg.cluster_domain}"
        aliases = [HostAlias(ip=a["ip"], hostnames=list(a.get("hostnames") or []))
                   for a in spec.get("hostAliases") or []]
        return SandboxConfig(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], hostname=hostname,
                             fqdn=fqdn, dns=self._dns(pod), host_aliases=aliases, labels={POD_UID_LABEL: meta["uid"]})

    def _dns(self, pod: dict[str, Any]) -> DNSConfig | None:
        """resolv.conf per dnsPolicy (None: the host's). ClusterFirst without a cluster DNS falls back to the
        host's, as Kubernetes does; dnsConfig entries are added to what the policy gives."""
        spec, domain = pod["spec"], self.cfg.cluster_domain
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        extra = spec.get("dnsConfig") or {}
        if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and self.cfg.cluster_dns:
            ns = pod["metadata"]["namespace"]
            dns = DNSConfig(list(self.cfg.cluster_dns), [f"{ns}.svc.{domain}", f"svc.{domain}", domain], ["ndots:5"])
        elif policy == "None":
            dns = DNSConfig()
        elif not extra:
            return None
        else:
            dns = host_dns()
        dns.nameservers += [n for n in extra.get("nameservers") or [] if n not in dns.nameservers]
        dns.searches += [s for s in extra.get("searches") or [] if s not in dns.searches]
        for opt in extra.get("options") or []:
            text = f"{opt['name']}:{opt['value']}" if opt.get("value") is not None else opt["name"]
            dns.options = [o for o in dns.options if o.split(":")[0] != opt["name"]] + [text]
        return dns

    async def start_container(self, pod: dict[str, Any], rt: PodRuntime, volumes: dict[str, Path], name: str,
                              init: bool) -> None:
        uid = pod["metadata"]["uid"]
        specs = pod["spec"].get("initContainers" if init else "containers") or []
        spec = next(s for s in specs if s["name"] == name)
        if not await self._ensure_image(pod, spec):
            return
        last = rt.latest(name, init)
        try:
            config = await self.container_config(pod, spec, rt.ip, volumes)
        except (ConfigError, RuntimeError_) as e:
            self._waiting[(uid, name)] = ("CreateContainerConfigError", str(e))
            self.recorder.warning(pod, "Failed", f"Error: {e}")
            self.queue.add_after(key_of(pod), CONFIG_RETRY)
            return
        config.labels = {POD_UID_LABEL: uid, NAME_LABEL: name, INIT_LABEL: "true" if init else "false",
                         ATTEMPT_LABEL: str(last.attempt + 1 if last else 0)}
        try:
            cid = await self.runtime.create_container(rt.sandbox_id or "", config)
        except RuntimeError_ as e:
            # a config the runtime refuses (runAsNonRoot with a root image, say) is the user's to fix
            reason = "CreateContainerConfigError" if isinstance(e, InvalidConfig) else "CreateContainerError"
            self._waiting[(uid, name)] = (reason, str(e))
            self.recorder.warning(pod, "Failed", f"Error: {e}")
            self.queue.add_after(key_of(pod), CONFIG_RETRY)
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
                await self.runtime.stop_container(cid, self._grace(pod))
        if last is not None:  # a restart: the next one waits twice as long
            delay = self._delays.get((uid, name), self.cfg.backoff_base)
            self._delays[(uid, name)] = min(delay * 2, self.cfg.backoff_max)

    async def _get(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(must_lookup(plural), name, namespace or None)
        except ApiError as e:
            if is_not_found(e):
                return None
            raise

    async def _setup_volumes(self, pod: dict[str, Any], pod_ip: str, refresh_only: bool = False) -> dict[str, Path]:
        ns = pod["metadata"]["namespace"]

        async def get(plural: str, name: str) -> dict[str, Any] | None:
            return await self._get(ns, plural, name)

        async def get_cluster(plural: str, name: str) -> dict[str, Any] | None:
            return await self._get("", plural, name)
        return await self.volumes.setup(pod, get, get_cluster, pod_ip, self.node.ip, self.cfg.allocatable,
                                        refresh_only=refresh_only)

    async def container_config(self, pod: dict[str, Any], spec: dict[str, Any], pod_ip: str,
                               volumes: dict[str, Path]) -> ContainerConfig:
        """The runtime config of one container: env, $(VAR) expansion, volume mounts, resources, security."""
        ns = pod["metadata"]["namespace"]

        async def get(plural: str, name: str) -> dict[str, Any] | None:
            return await self._get(ns, plural, name)

        services: list[dict[str, Any]] = []
        if pod["spec"].get("enableServiceLinks", True):
            services = (await self.client.list(must_lookup("services"), ns)).get("items") or []
        env = await build_env(pod, spec, get, services, pod_ip, self.node.ip, self.cfg.allocatable)
        env_map = dict(env)
        res = spec.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        cpu_request = requests.get("cpu", limits.get("cpu"))  # a limit alone is also the request
        try:
            resources = Resources(
                cpu_limit_millis=to_millicores(limits["cpu"]) if "cpu" in limits else None,
                cpu_request_millis=to_millicores(cpu_request) if cpu_request is not None else None,
                memory_limit_bytes=to_bytes(limits["memory"]) if "memory" in limits else None)
        except QuantityError as e:
            raise ConfigError(f"resources: {e}") from None
        psc, csc = pod["spec"].get("securityContext") or {}, spec.get("securityContext") or {}
        caps = csc.get("capabilities") or {}
        security = SecurityContext(
            run_as_user=csc.get("runAsUser", psc.get("runAsUser")),
            run_as_group=csc.get("runAsGroup", psc.get("runAsGroup")),
            run_as_non_root=bool(csc.get("runAsNonRoot", psc.get("runAsNonRoot", False))),
            read_only_root_filesystem=bool(csc.get("readOnlyRootFilesystem", False)),
            privileged=bool(csc.get("privileged", False)),
            allow_privilege_escalation=csc.get("allowPrivilegeEscalation"),
            capabilities_add=list(caps.get("add") or []), capabilities_drop=list(caps.get("drop") or []))
        security.seccomp_profile, security.seccomp_localhost_path = seccomp_profile(
            psc, csc, self.cfg.seccomp_default, self.cfg.seccomp_dir)
        command, args = spec.get("command"), spec.get("args")
        mounts = await asyncio.to_thread(self.volumes.container_mounts, pod, spec, volumes)  # subPath binds: I/O
        return ContainerConfig(
            name=spec["name"], image=spec["image"],
            command=[expand(c, env_map) for c in command] if command else None,
            args=[expand(a, env_map) for a in args] if args else None,
            env=env, working_dir=spec.get("workingDir", ""), mounts=mounts,
            resources=resources, security=security, tty=bool(spec.get("tty")))

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
            await self._setup_volumes(pod, rt.ip, refresh_only=True)
        except ConfigError as e:
            log.info("%s: volumes not refreshed: %s", key_of(pod), e)  # keep the last content, as Kubernetes does

    async def _ensure_image(self, pod: dict[str, Any], spec: dict[str, Any]) -> bool:
        """Pull per imagePullPolicy; False (with a waiting reason set) when the image is not there."""
        uid, name, ref = pod["metadata"]["uid"], spec["name"], spec.get("image", "")
        untagged_or_latest = ref.endswith(":latest") or ":" not in ref.rsplit("/", 1)[-1]
        policy = spec.get("imagePullPolicy") or ("Always" if untagged_or_latest else "IfNotPresent")
        present = await asyncio.to_thread(self.images.resolve, ref) is not None
        local = ref.startswith("pkube.local/")  # bundled images: built here, never pulled from a registry
        if local and not present and ref == "pkube.local/busybox:latest":
            await asyncio.to_thread(ensure_busybox, self.images)
            present = True
        if present and (policy != "Always" or local):
            return True
        if policy == "Never" or (local and not present):
            msg = f'Container image "{ref}" is not present with pull policy of Never'
            self._waiting[(uid, name)] = ("ErrImageNeverPull", msg)
            self.recorder.warning(pod, "ErrImageNeverPull", msg)
            return False
        loop = asyncio.get_running_loop()
        retry_at, delay = self._pull_backoff.get((uid, name), (0.0, 0.0))
        if loop.time() < retry_at:
            self._waiting[(uid, name)] = ("ImagePullBackOff", f'Back-off pulling image "{ref}"')
            self.queue.add_after(key_of(pod), retry_at - loop.time())
            return False
        self.recorder.normal(pod, "Pulling", f'Pulling image "{ref}"')
        try:
            result = await asyncio.to_thread(self.images.pull, ref)
        except ImageError as e:
            delay = min(max(delay * 2, self.cfg.backoff_base), self.cfg.backoff_max)
            self._pull_backoff[(uid, name)] = (loop.time() + delay, delay)
            self._waiting[(uid, name)] = ("ErrImagePull", str(e))
            self.recorder.warning(pod, "Failed", f'Failed to pull image "{ref}": {e}')
            # halfway through the wait the pod shows ImagePullBackOff (the branch above), then it retries
            self.queue.add_after(key_of(pod), delay / 2)
            return False
        self._pull_backoff.pop((uid, name), None)
        self.recorder.normal(pod, "Pulled", f'Successfully pulled image "{ref}" ({result.bytes} bytes)')
        return True

    async def _image_id(self, ref: str) -> str:
        """`name@<image id>` for the status, cached for a while (resolving reads the store's index)."""
        now = asyncio.get_running_loop().time()
        cached = self._image_ids.get(ref)
        if cached is None or cached[1] < now:
            img = await asyncio.to_thread(self.images.resolve, ref)
            cached = self._image_ids[ref] = (f"{ref.rsplit(':', 1)[0]}@{img.id}" if img else "", now + 30)
        return cached[0]

    async def write_status(self, pod: dict[str, Any], rt: PodRuntime, backoff: dict[str, float]) -> None:
        uid = pod["metadata"]["uid"]
        waiting = {n: v for (u, n), v in self._waiting.items() if u == uid}
        image_ids = {}
        for s in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]:
            image_id = await self._image_id(s.get("image", ""))
            if image_id:
                image_ids[s["image"]] = image_id
        inputs = StatusInputs(host_ip=self.node.ip, probes=self.probes.view(uid), waiting=waiting, backoff=backoff,
                              image_ids=image_ids)
        status = compute_status(pod, rt, inputs, pod_finished(pod, rt))
        if same_status(pod.get("status") or {}, status):
            return
        # a merge patch: keys we own that are gone now must be nulled explicitly
        patch = {**{k: None for k in OWNED_STATUS if k in (pod.get("status") or {}) and k not in status}, **status}
        try:
            written = await self.client.patch(PODS, pod["metadata"]["name"], {"status": patch},
                                              pod["metadata"]["namespace"], subresource="status")
            self._written[uid] = written.get("status") or {}
        except ApiError as e:
            if not is_not_found(e):
                raise

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
        await self._stop_all(pod, rt, self._grace(pod))
        await self.teardown(uid)
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": uid})
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    async def teardown(self, uid: str) -> None:
        for s in await self.runtime.list_sandboxes():
            if s.config.uid == uid:
                await self.runtime.remove_sandbox(s.id)
        await asyncio.to_thread(self.volumes.teardown, uid)
        for table in (self._delays, self._waiting, self._pull_backoff):
            for k in [k for k in table if k[0] == uid]:
                del table[k]
        self._snapshot.pop(uid, None)
        self._refreshed.pop(uid, None)
        self._written.pop(uid, None)

    async def relist_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.cfg.sync_frequency
        while True:
            full = loop.time() >= next_full
            try:
                await self.relist()
                await asyncio.to_thread(self.runtime.rotate_logs)  # containerLogMaxSize / MaxFiles
                if full:
                    await self.remove_orphaned_volumes()
            except (RuntimeError_, OSError) as e:
                log.warning("relist failed: %s", e)
            if full:
                next_full = loop.time() + self.cfg.sync_frequency
                for key in self.pods.store.keys():
                    self.queue.add(key)
            await asyncio.sleep(self.cfg.relist_period)

    async def relist(self) -> None:
        """Requeue pods whose containers changed state; remove what belongs to pods that are gone."""
        sandboxes = await self.runtime.list_sandboxes()
        # files only: a container exit is what a relist must notice; a full sync (sync_frequency) asks runc
        exits = await asyncio.to_thread(self.runtime.container_exits)
        seen: dict[str, list[Any]] = {}
        sandbox_uid = {s.id: s.config.uid for s in sandboxes}
        for s in sandboxes:
            seen.setdefault(s.config.uid, []).append((s.id, s.state.value))
        for cid, (sandbox_id, exited) in exits.items():
            if sandbox_id not in sandbox_uid:
                try:
                    await self.runtime.sandbox_status(sandbox_id)
                    continue  # a sandbox made since we listed: the next relist sees both
                except NotFound:
                    # its sandbox was removed while a sync was still creating it: nothing owns it any more
                    await self.runtime.remove_container(cid)
                    continue
            seen[sandbox_uid[sandbox_id]].append((cid, "exited" if exited else "live"))
        # read the cache only now: a pod that arrived while we listed is known (never mistaken for an orphan)
        by_uid = {p["metadata"]["uid"]: p for p in self.pods.store.list()}
        for uid, items in seen.items():
            if uid not in by_uid:
                log.info("removing pod %s: it is no longer bound to this node", uid)
                self.probes.remove_pod(uid)
                await self.teardown(uid)
                continue
            snap = tuple(sorted(items))
            if self._snapshot.get(uid) != snap:
                self._snapshot[uid] = snap
                self.queue.add(key_of(by_uid[uid]))

    async def remove_orphaned_volumes(self) -> None:
        """Volumes of pods that have neither a sandbox nor an API object (left by a crash between the two
        removals; teardown() normally takes them with the sandbox): rare, so looked for only at full syncs."""
        uids = await asyncio.to_thread(self.volumes.pod_uids)
        if not uids:
            return
        sandboxes = {s.config.uid for s in await self.runtime.list_sandboxes()}
        known = {p["metadata"]["uid"] for p in self.pods.store.list()}
        for uid in uids:
            if uid not in sandboxes and uid not in known:
                await asyncio.to_thread(self.volumes.teardown, uid)
