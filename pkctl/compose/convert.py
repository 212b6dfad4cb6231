"""A Compose project -> the Kubernetes objects that run it. Pure.

One namespace per project. Each service is a Deployment (`deploy.replicas`; a bare Pod for `restart: "no"`
or `on-failure`, whose containers a Deployment would restart) and a Service of the same name, so service
names resolve through cluster DNS as on a Compose network; a service without ports gets a headless Service
(its name resolves to its pods). Each other name of a service, its `aliases` on its networks and the
`links: [SERVICE:ALIAS]` of other services naming it, is one more Service selecting the same pods: names are
project-wide (Docker scopes an alias to its network, a link alias to the linking container), and a name two
services claim is an error.

Networks: a service's pods carry the label `com.docker.compose.network.<net>: "true"` for each network it is
on (`default` unless it names its networks), and each network is a NetworkPolicy: the pods with its label
take ingress from the pods with its label, so a service only on `front` cannot reach one only on `back`
(policies add up: a pod on both networks takes both). A service publishing ports has one more policy
letting anyone reach those ports, as Docker publishes them to the world.

`ports` become hostPorts: the node publishes them as Docker does. Named volumes are PersistentVolumeClaims
of the default (local-path) class, kept by `down`; bind mounts are hostPath volumes; healthchecks are
readiness probes. Everything carries the labels `com.docker.compose.project` and `com.docker.compose.service`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import NETWORK_LABEL_PREFIX, ComposeError, Mount, Project, Service

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
IMAGE_ANNOTATION = "com.docker.compose.image"  # Docker Compose's label of a container's image ID
NETWORK_LABEL = "com.docker.compose.network"  # on a network's NetworkPolicy: the network's name in the file
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
VOLUME_SIZE = "1Gi"  # a named volume has no size in Compose; local-path volumes do not enforce it

Obj = dict[str, Any]


@dataclass
class Plan:
    namespace: Obj
    volumes: list[Obj]
    services: dict[str, list[Obj]] = field(default_factory=dict)  # service -> its objects, in start order
    order: list[str] = field(default_factory=list)
    policies: list[Obj] = field(default_factory=list)  # NetworkPolicies: the networks, then published ports

    def objects(self) -> list[Obj]:
        return [self.namespace, *self.volumes, *self.policies, *(o for s in self.order for o in self.services[s])]


def image_of(project: Project, svc: Service) -> str:
    """The image a service runs: its `image`, else the one `build` makes (a never-pulled local name)."""
    return svc.image or f"pkube.local/{project.name}-{svc.name}:latest"


def start_order(project: Project) -> list[str]:
    """Services after the ones they depend on (file order otherwise); a cycle is an error."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ComposeError(f"dependency cycle: {' -> '.join([*path, name])}")
        state[name] = "visiting"
        for dep in project.services[name].depends_on:
            visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)
    for name in project.services:
        visit(name, [])
    return order


def _labels(project: Project, svc: Service | None = None) -> dict[str, str]:
    out = {PROJECT_LABEL: project.name}
    if svc is not None:
        out[SERVICE_LABEL] = svc.name
    return out


def needs_privileged(project: Project) -> bool:
    """Published ports, bind mounts and the host network are refused by Pod Security `baseline`: a project that
    uses them asks for what `docker run` gives, so its namespace is at level `privileged`."""
    return any(svc.host_network or any(p.host for p in svc.ports) or any(m.kind == "bind" for m in svc.mounts)
               for svc in project.services.values())


def convert(project: Project) -> Plan:
    ns_labels = _labels(project)
    if needs_privileged(project):
        ns_labels[PSA_ENFORCE] = "privileged"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": project.name, "labels": ns_labels}}
    used = {m.source for s in project.services.values() for m in s.mounts if m.kind == "volume"}
    volumes = [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": project.name,
                             "labels": {**_labels(project), "com.docker.compose.volume": name}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": VOLUME_SIZE}}}}
               for name, claim in project.volumes.items() if claim in used]
    plan = Plan(namespace, volumes, order=start_order(project), policies=network_policies(project))
    names = dns_names(project)
    for name in plan.order:
        svc = project.services[name]
        plan.services[name] = [*_services(project, svc, names[name]), _workload(project, svc)]
    return plan


def dns_names(project: Project) -> dict[str, list[str]]:
    """Each service's names: its own, its network aliases, then the link aliases other services give it."""
    owner: dict[str, str] = {}
    out: dict[str, list[str]] = {name: [] for name in project.services}

    def claim(name: str, service: str, why: str) -> None:
        if owner.setdefault(name, service) != service:
            raise ComposeError(f"{why}: {name!r} already names service {owner[name]!r} (each name is one "
                               "Service of the project's namespace)")
        if name not in out[service]:
            out[service].append(name)
    for svc in project.services.values():
        claim(svc.name, svc.name, f"service {svc.name!r}")
    for svc in project.services.values():
        for net, aliases in svc.networks.items():
            for alias in aliases:
                claim(alias, svc.name, f"service {svc.name!r}: alias {alias!r} on network {net!r}")
    for svc in project.services.values():
        for alias, target in svc.links.items():
            if target in project.services:
                claim(alias, target, f"service {svc.name!r}: link {target}:{alias}")
    return out


def network_labels(svc: Service) -> dict[str, str]:
    return {NETWORK_LABEL_PREFIX + net: "true" for net in svc.networks}


def network_policies(project: Project) -> list[Obj]:
    """One NetworkPolicy per network some service is on (ingress from its members only), and one per service
    with published ports (ingress to them from anywhere)."""
    used = {net for svc in project.services.values() for net in svc.networks}
    out: list[Obj] = []
    for net, kube_name in project.networks.items():
        if net not in used:
            continue
        members = {"matchLabels": {NETWORK_LABEL_PREFIX + net: "true"}}
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": kube_name, "namespace": project.name,
                                 "labels": {**_labels(project), NETWORK_LABEL: net}},
                    "spec": {"podSelector": members, "policyTypes": ["Ingress"],
                             "ingress": [{"from": [{"podSelector": members}]}]}})
    for svc in project.services.values():
        published: list[Obj] = []
        for p in svc.ports:
            port = {"protocol": p.protocol, "port": p.container}
            if p.host and svc.networks and port not in published:  # a host-network pod is under no policy
                published.append(port)
        if published:
            out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": f"{svc.name}-published", "namespace": project.name,
                                     "labels": _labels(project, svc)},
                        "spec": {"podSelector": {"matchLabels": _labels(project, svc)}, "policyTypes": ["Ingress"],
                                 "ingress": [{"ports": published}]}})
    return out


def _services(project: Project, svc: Service, names: list[str]) -> list[Obj]:
    ports: list[Obj] = []
    seen = set()
    for p in svc.ports:
        if (p.container, p.protocol) in seen:
            continue
        seen.add((p.container, p.protocol))
        ports.append({"name": f"{p.protocol.lower()}-{p.container}", "port": p.container,
                      "targetPort": p.container, "protocol": p.protocol})
    spec: Obj = {"selector": _labels(project, svc)}
    if ports:
        spec["ports"] = ports
    else:
        spec["clusterIP"] = "None"
    return [{"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": dns_name, "namespace": project.name, "labels": _labels(project, svc)},
             "spec": dict(spec)} for dns_name in names]


def _probe(svc: Service) -> Obj | None:
    hc = svc.healthcheck
    if hc is None:
        return None
    return {"exec": {"command": hc.test}, "periodSeconds": max(1, round(hc.interval)),
            "timeoutSeconds": max(1, round(hc.timeout)), "failureThreshold": max(1, hc.retries),
            "initialDelaySeconds": round(hc.start_period)}


def _volume(m: Mount, index: int) -> tuple[Obj, Obj]:
    """(pod volume, container volumeMount) for one mount."""
    name = f"v{index}"
    mount: Obj = {"name": name, "mountPath": m.target}
    if m.read_only:
        mount["readOnly"] = True
    if m.kind == "volume":
        return {"name": name, "persistentVolumeClaim": {"claimName": m.source}}, mount
    if m.kind == "bind":  # Docker creates a missing bind source directory
        return {"name": name, "hostPath": {"path": m.source, "type": "DirectoryOrCreate"}}, mount
    if m.kind == "tmpfs":
        return {"name": name, "emptyDir": {"medium": "Memory"}}, mount
    return {"name": name, "emptyDir": {}}, mount


def pod_spec(project: Project, svc: Service) -> Obj:
    c: Obj = {"name": svc.name, "image": image_of(project, svc)}
    if svc.build is not None:
        c["imagePullPolicy"] = "IfNotPresent"  # built here: nothing to pull
    if svc.entrypoint is not None:
        c["command"] = list(svc.entrypoint)
    if svc.command is not None:
        c["args"] = list(svc.command)
    if svc.environment:
        c["env"] = [{"name": k, "value": v} for k, v in svc.environment.items()]
    ports = []
    for p in svc.ports:
        port: Obj = {"containerPort": p.container, "protocol": p.protocol}
        if p.host:
            port["hostPort"] = p.host
            if p.host_ip and p.host_ip != "0.0.0.0":
                port["hostIP"] = p.host_ip
        if port not in ports:
            ports.append(port)
    if ports:
        c["ports"] = ports
    if svc.working_dir:
        c["workingDir"] = svc.working_dir
    if svc.user:
        uid, _, gid = svc.user.partition(":")
        c["securityContext"] = {"runAsUser": int(uid), **({"runAsGroup": int(gid)} if gid else {})}
    if svc.limits or svc.requests:
        c["resources"] = {k: v for k, v in (("limits", svc.limits), ("requests", svc.requests)) if v}
    if (probe := _probe(svc)) is not None:
        c["readinessProbe"] = probe
    volumes, mounts = [], []
    for i, m in enumerate(svc.mounts):
        v, vm = _volume(m, i)
        volumes.append(v)
        mounts.append(vm)
    if mounts:
        c["volumeMounts"] = mounts
    spec: Obj = {"containers": [c], "terminationGracePeriodSeconds": round(svc.stop_grace_period)}
    if volumes:
        spec["volumes"] = volumes
    if svc.host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    return spec


def restart_policy(svc: Service) -> str:
    if svc.restart == "no":
        return "Never"
    if svc.restart.startswith("on-failure"):
        return "OnFailure"
    return "Always"


def _workload(project: Project, svc: Service) -> Obj:
    labels = _labels(project, svc)
    pod_labels = {**labels, **network_labels(svc)}  # the selectors stay on project and service
    meta: Obj = {"name": svc.name, "namespace": project.name, "labels": dict(labels)}
    if svc.labels:
        meta["annotations"] = dict(svc.labels)
    spec = pod_spec(project, svc)
    policy = restart_policy(svc)
    if policy != "Always":
        # A Deployment's pods always restart; `restart: "no"` / `on-failure` services run once, as a Pod.
        if svc.replicas != 1:
            raise ComposeError(f"service {svc.name!r}: restart {svc.restart!r} needs deploy.replicas 1")
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {**meta, "labels": pod_labels},
                "spec": {**spec, "restartPolicy": policy}}
    template_meta: Obj = {"labels": dict(pod_labels)}
    if svc.labels or svc.image_id:
        template_meta["annotations"] = {**svc.labels, **({IMAGE_ANNOTATION: svc.image_id} if svc.image_id else {})}
    dep_spec: Obj = {"replicas": svc.replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": template_meta, "spec": spec}}
    if any(p.host for p in svc.ports) or any(m.kind == "volume" for m in svc.mounts):
        # A new pod cannot take the old one's host port (or ReadWriteOnce volume) while it runs: replace, not surge.
        dep_spec["strategy"] = {"type": "Recreate"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": dep_spec}
