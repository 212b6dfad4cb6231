"""Pod → runtime configs: the sandbox (hostname, DNS per dnsPolicy, host aliases) and each container (env with
$(VAR) expansion, volume mounts, resources, security context and seccomp profile)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from pklib.quantity import QuantityError, to_bytes, to_millicores

from kubelet.env import ConfigError, build_env, expand
from kubelet.plan import POD_UID_LABEL
from kubelet.runtime.interface import (ContainerConfig, DNSConfig, HostAlias, InvalidConfig, Resources,
                                       SandboxConfig, SecurityContext)
from kubelet.runtime.podfiles import HOST_RESOLV_CONF
from kubelet.runtime.seccomp import localhost_path
from kubelet.shared import call_blocking
from kubelet.volumes import VolumeManager

Getter = Callable[[str, str], Awaitable[dict[str, Any] | None]]        # (plural, name) -> object in the pod's ns
NamespacedGetter = Callable[[str, str, str], Awaitable[dict[str, Any] | None]]  # (namespace, plural, name)
ServiceLister = Callable[[str], Awaitable[list[dict[str, Any]]]]       # namespace -> its Services
PodTokenGetter = Callable[[dict[str, Any], str, int], Awaitable[str]]  # (pod, audience, seconds) -> bound token
MASTER_SERVICE, MASTER_SERVICE_NAMESPACE = "kubernetes", "default"


async def _no_services() -> list[dict[str, Any]]:
    return []


@dataclass
class PodConfigOptions:
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


def resources(spec: dict[str, Any]) -> Resources:
    res = spec.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    cpu_request = requests.get("cpu", limits.get("cpu"))  # a limit alone is also the request
    try:
        return Resources(
            cpu_limit_millis=to_millicores(limits["cpu"]) if "cpu" in limits else None,
            cpu_request_millis=to_millicores(cpu_request) if cpu_request is not None else None,
            memory_limit_bytes=to_bytes(limits["memory"]) if "memory" in limits else None)
    except QuantityError as e:
        raise ConfigError(f"resources: {e}") from None


def security_context(pod: dict[str, Any], spec: dict[str, Any], opts: PodConfigOptions) -> SecurityContext:
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
        psc, csc, opts.seccomp_default, opts.seccomp_dir)
    return security


class ContainerConfigBuilder:
    def __init__(self, opts: PodConfigOptions, volumes: VolumeManager, node_ip: Callable[[], str],
                 get: NamespacedGetter, services: ServiceLister, tokens: PodTokenGetter | None = None) -> None:
        self.opts = opts
        self.volumes = volumes
        self.node_ip = node_ip
        self.get = get
        self.services = services
        self.tokens = tokens

    def sandbox_config(self, pod: dict[str, Any]) -> SandboxConfig:
        meta, spec = pod["metadata"], pod["spec"]
        hostname = (spec.get("hostname") or meta["name"])[:63].rstrip("-.")
        fqdn = ""
        if spec.get("subdomain"):
            fqdn = f"{hostname}.{spec['subdomain']}.{meta['namespace']}.svc.{self.opts.cluster_domain}"
        aliases = [HostAlias(ip=a["ip"], hostnames=list(a.get("hostnames") or []))
                   for a in spec.get("hostAliases") or []]
        host_network = spec.get("hostNetwork") is True
        return SandboxConfig(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], hostname=hostname,
                             fqdn=fqdn, dns=self.dns(pod), host_aliases=aliases, labels={POD_UID_LABEL: meta["uid"]},
                             host_network=host_network, host_ip=self.node_ip() if host_network else "",
                             host_pid=spec.get("hostPID") is True, host_ipc=spec.get("hostIPC") is True,
                             share_pid=spec.get("shareProcessNamespace") is True)

    def dns(self, pod: dict[str, Any]) -> DNSConfig | None:
        """resolv.conf per dnsPolicy (None: the host's). ClusterFirst without a cluster DNS falls back to the
        host's, as Kubernetes does; dnsConfig entries are added to what the policy gives."""
        spec, domain = pod["spec"], self.opts.cluster_domain
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        extra = spec.get("dnsConfig") or {}
        # A hostNetwork pod asks for the cluster's DNS with ClusterFirstWithHostNet; ClusterFirst gives it the host's.
        cluster_first = policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork"))
        if cluster_first and self.opts.cluster_dns:
            ns = pod["metadata"]["namespace"]
            dns = DNSConfig(list(self.opts.cluster_dns), [f"{ns}.svc.{domain}", f"svc.{domain}", domain], ["ndots:5"])
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

    async def setup_volumes(self, pod: dict[str, Any], pod_ip: str, refresh_only: bool = False) -> dict[str, Path]:
        ns = pod["metadata"]["namespace"]

        async def get(plural: str, name: str) -> dict[str, Any] | None:
            return await self.get(ns, plural, name)

        async def get_cluster(plural: str, name: str) -> dict[str, Any] | None:
            return await self.get("", plural, name)

        async def token(audience: str, expiration_seconds: int) -> str:
            assert self.tokens is not None
            return await self.tokens(pod, audience, expiration_seconds)
        return await self.volumes.setup(pod, get, get_cluster, pod_ip, self.node_ip(), self.opts.allocatable,
                                        refresh_only=refresh_only, token=token if self.tokens else None)

    async def service_env_sources(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        """The Services whose variables a container gets: its namespace's when enableServiceLinks, and always
        the API's own (`kubernetes` in `default`), as the kubelet's master services; a Service of the pod's
        namespace wins over it by name."""
        ns = pod["metadata"]["namespace"]
        links = bool(pod["spec"].get("enableServiceLinks", True))
        # the two lists are read together (the master Service's namespace need not be read twice)
        own, master = await asyncio.gather(
            self.services(ns) if links else _no_services(),
            self.services(MASTER_SERVICE_NAMESPACE) if not (links and ns == MASTER_SERVICE_NAMESPACE)
            else _no_services())
        if any(s["metadata"]["name"] == MASTER_SERVICE for s in own):
            return own
        return [*own, *(s for s in master if s["metadata"]["name"] == MASTER_SERVICE)]

    async def container_config(self, pod: dict[str, Any], spec: dict[str, Any], pod_ip: str,
                               volumes: dict[str, Path]) -> ContainerConfig:
        """The runtime config of one container: env, $(VAR) expansion, volume mounts, resources, security."""
        ns = pod["metadata"]["namespace"]

        async def get(plural: str, name: str) -> dict[str, Any] | None:
            return await self.get(ns, plural, name)

        services = await self.service_env_sources(pod)
        env = await build_env(pod, spec, get, services, pod_ip, self.node_ip(), self.opts.allocatable)
        env_map = dict(env)
        limits = resources(spec)
        security = security_context(pod, spec, self.opts)
        command, args = spec.get("command"), spec.get("args")
        # subPath binds are I/O (in a thread); plain mounts are only computed
        has_subpath = any(m.get("subPath") for m in spec.get("volumeMounts") or [])
        mounts = await call_blocking(not has_subpath, self.volumes.container_mounts, pod, spec, volumes)
        return ContainerConfig(
            name=spec["name"], image=spec["image"],
            command=[expand(c, env_map) for c in command] if command else None,
            args=[expand(a, env_map) for a in args] if args else None,
            env=env, working_dir=spec.get("workingDir", ""), mounts=mounts,
            resources=limits, security=security, tty=bool(spec.get("tty")),
            stdin=bool(spec.get("stdin")), stdin_once=bool(spec.get("stdinOnce")))
