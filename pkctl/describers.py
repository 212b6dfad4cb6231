"""`pkctl describe` text: kubectl's sections (Name, Namespace, Labels, Annotations, the essentials of spec
and status per kind, Events), aligned the way Go's tabwriter aligns kubectl's output. Pure: objects in, text out.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, NamedTuple

from pklib.api.qos import qos_class
from pklib.api.wellknown import LAST_APPLIED_ANNOTATION, REVISION_ANNOTATION
from pklib.columns import map_string, pod_status_and_restarts, selector_string
from pklib.resources import Resource

from .allocation import pod_requests_and_limits, total, with_percent
from .describe_netpol import spec_lines as networkpolicy_spec_lines
from .printers import NONE, parse_time, since
from .rollout_template import env_source_text

Obj = dict[str, Any]


class Out:
    """Lines whose cells are separated by tabs, indented by level (2 spaces each), aligned at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def w(self, level: int, *cells: Any) -> None:
        self.lines.append("  " * level + "\t".join(str(c) for c in cells))

    def multi(self, level: int, title: str, items: list[str]) -> None:
        """`Labels:  a=b` with the next items under the first one, like kubectl's multi-line fields."""
        if not items:
            self.w(level, title, NONE)
            return
        self.w(level, title, items[0])
        for item in items[1:]:
            self.w(level, "", item)

    def text(self) -> str:
        return "\n".join(tabwrite(self.lines)) + "\n"


def tabwrite(lines: list[str], padding: int = 2) -> list[str]:
    """Go text/tabwriter alignment: a column is as wide as its widest cell among the adjacent lines having it."""
    rows = [line.split("\t") for line in lines]
    widths = [[0] * (len(r) - 1) for r in rows]

    def fmt(start: int, end: int, col: int) -> None:
        i = start
        while i < end:
            if len(rows[i]) - 1 <= col:
                i += 1
                continue
            j = i
            while j < end and len(rows[j]) - 1 > col:
                j += 1
            width = max(len(rows[k][col]) for k in range(i, j)) + padding
            for k in range(i, j):
                widths[k][col] = width
            fmt(i, j, col + 1)
            i = j

    fmt(0, len(rows), 0)
    return ["".join(c.ljust(widths[k][n]) if n < len(r) - 1 else c for n, c in enumerate(r)).rstrip()
            for k, r in enumerate(rows)]


def timestamp(value: str | None) -> str:
    """RFC 1123 with numeric zone, as kubectl prints times: `Sun, 22 Nov 2026 02:37:34 +0000`."""
    t = parse_time(value)
    return t.strftime("%a, %d %b %Y %H:%M:%S %z") if t else "<unset>"


def _kv(m: Obj | None, sep: str = "=") -> list[str]:
    return [f"{k}{sep}{v}" for k, v in sorted((m or {}).items())]


def _meta(o: Obj) -> Obj:
    return o.get("metadata") or {}


def _common(out: Out, o: Obj, namespaced: bool, now: datetime, created: bool = True) -> None:
    meta = _meta(o)
    out.w(0, "Name:", meta.get("name", ""))
    if namespaced:
        out.w(0, "Namespace:", meta.get("namespace", ""))
    if created:
        out.w(0, "CreationTimestamp:", timestamp(meta.get("creationTimestamp")))
    out.multi(0, "Labels:", _kv(meta.get("labels")))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != LAST_APPLIED_ANNOTATION}
    out.multi(0, "Annotations:", _kv(annotations, ": "))
    if meta.get("deletionTimestamp"):
        out.w(0, "Status:", f"Terminating (lasts {since(meta['deletionTimestamp'], now)})")
    owners = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if owners:
        out.w(0, "Controlled By:", f"{owners[0].get('kind')}/{owners[0].get('name')}")


def _ports(c: Obj) -> list[str]:
    return [f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}" for p in c.get("ports") or []]


def _env_value(e: Obj) -> str:
    src: Obj = e.get("valueFrom") or {}
    return env_source_text(src) if src else str(e.get("value", ""))


def _env(c: Obj) -> list[tuple[str, str]]:
    return [(f"{e.get('name')}:", _env_value(e)) for e in c.get("env") or []]


def _state(out: Out, level: int, title: str, state: Obj | None) -> None:
    if not state:
        out.w(level, title, "Waiting")
        return
    kind, detail = next(iter(state.items()))
    detail = detail or {}
    out.w(level, title, kind.capitalize())
    if detail.get("reason"):
        out.w(level + 1, "Reason:", detail["reason"])
    if detail.get("message"):
        out.w(level + 1, "Message:", detail["message"])
    if "exitCode" in detail:
        out.w(level + 1, "Exit Code:", detail["exitCode"])
    if detail.get("startedAt"):
        out.w(level + 1, "Started:", timestamp(detail["startedAt"]))
    if detail.get("finishedAt"):
        out.w(level + 1, "Finished:", timestamp(detail["finishedAt"]))


def _containers(out: Out, level: int, title: str, containers: list[Obj], statuses: list[Obj] | None) -> None:
    if not containers:
        return
    out.w(level, title)
    by_name = {s.get("name"): s for s in statuses or []}
    for c in containers:
        out.w(level + 1, f"{c.get('name')}:")
        s = by_name.get(c.get("name"))
        inner = level + 2
        if s is not None and s.get("containerID"):
            out.w(inner, "Container ID:", s["containerID"])
        out.w(inner, "Image:", c.get("image", ""))
        if s is not None:
            out.w(inner, "Image ID:", s.get("imageID", ""))
        ports = _ports(c)
        out.w(inner, "Port:" if len(ports) < 2 else "Ports:", ", ".join(ports) or NONE)
        if c.get("command"):
            out.multi(inner, "Command:", [str(x) for x in c["command"]])
        if c.get("args"):
            out.multi(inner, "Args:", [str(x) for x in c["args"]])
        if s is not None:
            _state(out, inner, "State:", s.get("state"))
            if s.get("lastState"):
                _state(out, inner, "Last State:", s.get("lastState"))
            out.w(inner, "Ready:", str(bool(s.get("ready"))))
            out.w(inner, "Restart Count:", s.get("restartCount", 0))
        resources = c.get("resources") or {}
        for part in ("limits", "requests"):
            if resources.get(part):
                out.w(inner, f"{part.capitalize()}:")
                for k, v in sorted(resources[part].items()):
                    out.w(inner + 1, f"{k}:", v)
        env = _env(c)
        if env:
            out.w(inner, "Environment:")
            for name, value in env:
                out.w(inner + 1, name, value)
        else:
            out.w(inner, "Environment:", NONE)
        mounts = [f"{m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})"
                  for m in c.get("volumeMounts") or []]
        out.multi(inner, "Mounts:", mounts)


def _volumes(out: Out, level: int, volumes: list[Obj]) -> None:
    if not volumes:
        out.w(level, "Volumes:", NONE)
        return
    out.w(level, "Volumes:")
    for v in volumes:
        out.w(level + 1, f"{v.get('name')}:")
        kind = next((k for k in v if k != "name"), "")
        out.w(level + 2, "Type:", kind)
        for k, val in sorted((v.get(kind) or {}).items()):
            if not isinstance(val, (dict, list)):
                out.w(level + 2, f"{k}:", val)


def _conditions(out: Out, conditions: list[Obj], with_reason: bool) -> None:
    if not conditions:
        return
    out.w(0, "Conditions:")
    out.w(1, "Type", "Status", *(["Reason"] if with_reason else []))
    out.w(1, "----", "------", *(["------"] if with_reason else []))
    for c in conditions:
        out.w(1, c.get("type", ""), c.get("status", ""), *([c.get("reason", "")] if with_reason else []))


def _pod(out: Out, o: Obj, now: datetime) -> None:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    out.w(0, "Service Account:", spec.get("serviceAccountName") or "default")
    node = spec.get("nodeName")
    out.w(0, "Node:", f"{node}/{status.get('hostIP')}" if node and status.get("hostIP") else (node or NONE))
    if status.get("startTime"):
        out.w(0, "Start Time:", timestamp(status["startTime"]))
    out.w(0, "Status:", pod_status_and_restarts(o, now)[2] if _meta(o).get("deletionTimestamp")
          else status.get("phase", ""))
    out.w(0, "IP:", status.get("podIP", ""))
    _containers(out, 0, "Init Containers:", spec.get("initContainers") or [], status.get("initContainerStatuses"))
    _containers(out, 0, "Containers:", spec.get("containers") or [], status.get("containerStatuses"))
    _conditions(out, status.get("conditions") or [], False)
    _volumes(out, 0, spec.get("volumes") or [])
    out.w(0, "QoS Class:", status.get("qosClass") or qos_class(spec))
    out.multi(0, "Node-Selectors:", _kv(spec.get("nodeSelector")))
    tolerations = [f"{t.get('key', '')}{'=' + t['value'] if t.get('value') else ''}"
                   f"{':' + t['effect'] if t.get('effect') else ''}" for t in spec.get("tolerations") or []]
    out.multi(0, "Tolerations:", tolerations)


def _pod_template(out: Out, template: Obj) -> None:
    out.w(0, "Pod Template:")
    out.multi(1, "Labels:", _kv((template.get("metadata") or {}).get("labels")))
    spec = template.get("spec") or {}
    _containers(out, 1, "Containers:", spec.get("containers") or [], None)
    _volumes(out, 1, spec.get("volumes") or [])


def _deployment(out: Out, o: Obj, now: datetime) -> None:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    out.w(0, "Selector:", selector_string(spec.get("selector")))
    out.w(0, "Replicas:", f"{spec.get('replicas', 0)} desired | {status.get('updatedReplicas', 0)} updated | "
                          f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
                          f"{status.get('unavailableReplicas', 0)} unavailable")
    strategy = spec.get("strategy") or {}
    out.w(0, "StrategyType:", strategy.get("type", ""))
    out.w(0, "MinReadySeconds:", spec.get("minReadySeconds", 0))
    rolling = strategy.get("rollingUpdate")
    if rolling:
        out.w(0, "RollingUpdateStrategy:", f"{rolling.get('maxUnavailable')} max unavailable, "
                                           f"{rolling.get('maxSurge')} max surge")
    _pod_template(out, spec.get("template") or {})
    _conditions(out, status.get("conditions") or [], True)


def _rollout(out: Out, deployment: Obj, replicasets: list[Obj]) -> None:
    """NewReplicaSet (the one of the current revision) and the OldReplicaSets still running pods."""
    uid = _meta(deployment).get("uid")
    revision = (_meta(deployment).get("annotations") or {}).get(REVISION_ANNOTATION)
    owned = [rs for rs in replicasets
             if any(r.get("controller") and r.get("uid") == uid for r in _meta(rs).get("ownerReferences") or [])]

    def is_new(rs: Obj) -> bool:
        annotations = _meta(rs).get("annotations") or {}
        return bool(revision) and annotations.get(REVISION_ANNOTATION) == revision

    def line(rs: Obj) -> str:
        return (f"{_meta(rs).get('name')} ({(rs.get('status') or {}).get('replicas', 0)}/"
                f"{(rs.get('spec') or {}).get('replicas', 0)} replicas created)")

    old = [line(rs) for rs in owned if not is_new(rs) and ((rs.get("spec") or {}).get("replicas")
                                                              or (rs.get("status") or {}).get("replicas"))]
    new = [line(rs) for rs in owned if is_new(rs)]
    out.w(0, "OldReplicaSets:", ", ".join(old) or NONE)
    out.w(0, "NewReplicaSet:", new[0] if new else NONE)


def _replicated(out: Out, o: Obj, now: datetime) -> None:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    out.w(0, "Selector:", selector_string(spec.get("selector")))
    if "replicas" in spec:
        out.w(0, "Replicas:", f"{status.get('replicas', 0)} current / {spec['replicas']} desired")
    else:
        out.w(0, "Desired Number of Nodes Scheduled:", status.get("desiredNumberScheduled", 0))
        out.w(0, "Current Number of Nodes Scheduled:", status.get("currentNumberScheduled", 0))
        out.w(0, "Number of Nodes Scheduled with Up-to-date Pods:", status.get("updatedNumberScheduled", 0))
        out.w(0, "Number of Nodes Scheduled with Available Pods:", status.get("numberAvailable", 0))
    out.w(0, "Ready Replicas:" if "replicas" in spec else "Ready Pods:",
          status.get("readyReplicas", status.get("numberReady", 0)))
    _pod_template(out, spec.get("template") or {})


def _replication_controller(out: Out, o: Obj, now: datetime) -> None:
    spec = o.get("spec") or {}
    _replicated(out, dict(o, spec=dict(spec, selector={"matchLabels": spec.get("selector") or {}})), now)


def _quota(out: Out, o: Obj, now: datetime) -> None:
    """kubectl's describeQuota: scopes, then used/hard per resource of status.hard."""
    spec, status = o.get("spec") or {}, o.get("status") or {}
    if spec.get("scopes"):
        out.w(0, "Scopes:", ", ".join(spec["scopes"]))
    for expr in (spec.get("scopeSelector") or {}).get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        out.w(0, "Scope Selector:", f"{expr.get('scopeName')} {expr.get('operator')} {values}".rstrip())
    out.w(0, "Resource", "Used", "Hard")
    out.w(0, "--------", "----", "----")
    used = status.get("used") or {}
    for name, hard in sorted((status.get("hard") or {}).items()):
        out.w(0, name, used.get(name, "0"), hard)


def _limit_range(out: Out, o: Obj, now: datetime) -> None:
    """kubectl's describeLimitRange: one row per item and resource, `-` where a bound is not set."""
    fields = ("min", "max", "defaultRequest", "default", "maxLimitRequestRatio")
    out.w(0, "Type", "Resource", "Min", "Max", "Default Request", "Default Limit", "Max Limit/Request Ratio")
    out.w(0, "----", "--------", "---", "---", "---------------", "-------------", "-----------------------")
    for item in (o.get("spec") or {}).get("limits") or []:
        names = sorted({n for f in fields for n in (item.get(f) or {})})
        for name in names:
            out.w(0, item.get("type", ""), name, *((item.get(f) or {}).get(name, "-") for f in fields))


def _job(out: Out, o: Obj, now: datetime) -> None:
    """kubectl's describeJob."""
    spec, status = o.get("spec") or {}, o.get("status") or {}
    out.w(0, "Selector:", selector_string(spec.get("selector")))
    out.w(0, "Parallelism:", spec.get("parallelism", 0))
    out.w(0, "Completions:", spec.get("completions", "<unset>"))
    out.w(0, "Completion Mode:", spec.get("completionMode", "NonIndexed"))
    out.w(0, "Suspend:", str(bool(spec.get("suspend"))).lower())
    out.w(0, "Backoff Limit:", spec.get("backoffLimit", 6))
    if spec.get("ttlSecondsAfterFinished") is not None:
        out.w(0, "TTL Seconds After Finished:", spec["ttlSecondsAfterFinished"])
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    if start is not None:
        out.w(0, "Start Time:", timestamp(status.get("startTime")))
    if end is not None:
        out.w(0, "Completed At:", timestamp(status.get("completionTime")))
    if start is not None and end is not None:
        out.w(0, "Duration:", since(status.get("startTime"), end))
    if spec.get("activeDeadlineSeconds") is not None:
        out.w(0, "Active Deadline Seconds:", f"{spec['activeDeadlineSeconds']}s")
    out.w(0, "Pods Statuses:", f"{status.get('active', 0)} Active ({status.get('ready', 0)} Ready) / "
                               f"{status.get('succeeded', 0)} Succeeded / {status.get('failed', 0)} Failed")
    if spec.get("completionMode") == "Indexed":
        out.w(0, "Completed Indexes:", status.get("completedIndexes") or NONE)
    _pod_template(out, spec.get("template") or {})


def _cronjob(out: Out, o: Obj, now: datetime) -> None:
    """kubectl's describeCronJob."""
    spec, status = o.get("spec") or {}, o.get("status") or {}
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    out.w(0, "Schedule:", spec.get("schedule", ""))
    if spec.get("timeZone"):
        out.w(0, "Time Zone:", spec["timeZone"])
    out.w(0, "Concurrency Policy:", spec.get("concurrencyPolicy", "Allow"))
    out.w(0, "Suspend:", str(bool(spec.get("suspend"))))
    out.w(0, "Successful Job History Limit:", spec.get("successfulJobsHistoryLimit", "<unset>"))
    out.w(0, "Failed Job History Limit:", spec.get("failedJobsHistoryLimit", "<unset>"))
    out.w(0, "Starting Deadline Seconds:", f"{spec['startingDeadlineSeconds']}s"
          if spec.get("startingDeadlineSeconds") is not None else "<unset>")
    out.w(0, "Selector:", selector_string(job_spec.get("selector")) if job_spec.get("selector") else "<unset>")
    out.w(0, "Parallelism:", job_spec.get("parallelism", "<unset>"))
    out.w(0, "Completions:", job_spec.get("completions", "<unset>"))
    _pod_template(out, job_spec.get("template") or {})
    last = status.get("lastScheduleTime")
    out.w(0, "Last Schedule Time:", timestamp(last) if last else NONE)
    out.w(0, "Active Jobs:", ", ".join(r.get("name", "") for r in status.get("active") or []) or NONE)


def _endpoint_addresses(endpoints: Obj, port_name: str) -> str:
    """`ip:port` of the ready addresses serving the service port named so (kubectl's formatEndpoints)."""
    found: list[str] = []
    for subset in endpoints.get("subsets") or []:
        for p in subset.get("ports") or []:
            if (p.get("name") or "") == port_name:
                found.extend(f"{a.get('ip')}:{p.get('port')}" for a in subset.get("addresses") or [])
    if not found:
        return NONE
    return ",".join(found[:3]) + (f" + {len(found) - 3} more..." if len(found) > 3 else "")


def _service(out: Out, o: Obj, now: datetime, endpoints: Obj | None = None) -> None:
    spec = o.get("spec") or {}
    out.w(0, "Selector:", map_string(spec.get("selector")))
    out.w(0, "Type:", spec.get("type") or "ClusterIP")
    out.w(0, "IP:", spec.get("clusterIP") or NONE)
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        out.w(0, "Port:", p.get("name") or "<unset>", f"{p.get('port')}/{proto}")
        out.w(0, "TargetPort:", f"{p.get('targetPort', p.get('port'))}/{proto}")
        if p.get("nodePort"):
            out.w(0, "NodePort:", p.get("name") or "<unset>", f"{p['nodePort']}/{proto}")
        out.w(0, "Endpoints:", _endpoint_addresses(endpoints or {}, p.get("name") or ""))
    out.w(0, "Session Affinity:", spec.get("sessionAffinity") or "None")


def _node(out: Out, o: Obj, now: datetime) -> None:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    taints = [f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
              for t in spec.get("taints") or []]
    out.multi(0, "Taints:", taints)
    out.w(0, "Unschedulable:", str(bool(spec.get("unschedulable"))).lower())
    _conditions(out, status.get("conditions") or [], True)
    out.multi(0, "Addresses:", [f"{a.get('type')}: {a.get('address')}" for a in status.get("addresses") or []])
    for title, key in (("Capacity:", "capacity"), ("Allocatable:", "allocatable")):
        if status.get(key):
            out.w(0, title)
            for k, v in sorted(status[key].items()):
                out.w(1, f"{k}:", v)
    info = status.get("nodeInfo") or {}
    if info:
        out.w(0, "System Info:")
        for k, v in sorted(info.items()):
            out.w(1, f"{k[0].upper()}{k[1:]}:", v)
    out.w(0, "PodCIDR:", spec.get("podCIDR") or "")


def _node_pods(out: Out, node: Obj, pods: list[Obj], now: datetime) -> None:
    """kubectl's Non-terminated Pods and Allocated resources: what the node's pods ask of its allocatable."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    out.w(0, "Non-terminated Pods:", f"({len(pods)} in total)")
    out.w(1, "Namespace", "Name", "CPU Requests", "CPU Limits", "Memory Requests", "Memory Limits", "Age")
    out.w(1, "---------", "----", "------------", "----------", "---------------", "-------------", "---")
    asked = []
    for pod in pods:
        requests, limits = pod_requests_and_limits(pod.get("spec") or {})
        asked.append((requests, limits))
        out.w(1, _meta(pod).get("namespace", ""), _meta(pod).get("name", ""),
              *(with_percent(amounts.get(r), allocatable.get(r))
                for r in ("cpu", "memory") for amounts in (requests, limits)),
              since(_meta(pod).get("creationTimestamp"), now))
    requests_total = total([r for r, _ in asked])
    limits_total = total([lim for _, lim in asked])
    out.w(0, "Allocated resources:")
    out.w(1, "(Total limits may be over 100 percent, i.e., overcommitted.)")
    out.w(1, "Resource", "Requests", "Limits")
    out.w(1, "--------", "--------", "------")
    for r in ("cpu", "memory", *sorted((set(requests_total) | set(limits_total)) - {"cpu", "memory"})):
        out.w(1, r, with_percent(requests_total.get(r), allocatable.get(r)),
              with_percent(limits_total.get(r), allocatable.get(r)))


def _namespace(out: Out, o: Obj, now: datetime) -> None:
    out.w(0, "Status:", (o.get("status") or {}).get("phase", ""))


def _secret(out: Out, o: Obj, now: datetime) -> None:
    out.w(0, "")
    out.w(0, "Type:", o.get("type") or "Opaque")
    out.w(0, "")
    out.w(0, "Data")
    out.w(0, "====")
    for k, v in sorted((o.get("data") or {}).items()):
        # Secret values are base64; kubectl shows their decoded size, never the value.
        out.w(0, f"{k}:", f"{len(v) * 3 // 4 - v.count('=')} bytes")


def _configmap(out: Out, o: Obj, now: datetime) -> None:
    out.w(0, "")
    out.w(0, "Data")
    out.w(0, "====")
    for k, v in sorted((o.get("data") or {}).items()):
        out.w(0, f"{k}:")
        out.w(0, "----")
        out.lines.extend(str(v).splitlines())
        out.w(0, "")


def _pdb(out: Out, o: Obj, now: datetime) -> None:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    if "minAvailable" in spec:
        out.w(0, "Min available:", spec["minAvailable"])
    elif "maxUnavailable" in spec:
        out.w(0, "Max unavailable:", spec["maxUnavailable"])
    out.w(0, "Selector:", selector_string(spec["selector"]) if "selector" in spec else "<unset>")
    out.w(0, "Status:")
    for title, field in (("Allowed disruptions:", "disruptionsAllowed"), ("Current:", "currentHealthy"),
                         ("Desired:", "desiredHealthy"), ("Total:", "expectedPods")):
        out.w(2, title, status.get(field, 0))


def _ingress_backend(backend: Obj | None) -> str:
    if not backend:
        return "<default>"
    if backend.get("resource"):
        r = backend["resource"]
        return f"APIGroup: {r.get('apiGroup', '')}, Kind: {r.get('kind', '')}, Name: {r.get('name', '')}"
    svc = backend.get("service") or {}
    port = svc.get("port") or {}
    return f"{svc.get('name', '')}:{port.get('number') or port.get('name', '')}"


def _ingress(out: Out, o: Obj, now: datetime) -> None:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    balancer = status.get("loadBalancer") or {}
    out.w(0, "Address:", ",".join(i.get("ip") or i.get("hostname") or "" for i in balancer.get("ingress") or []))
    out.w(0, "Ingress Class:", spec.get("ingressClassName") or NONE)
    out.w(0, "Default backend:", _ingress_backend(spec.get("defaultBackend")))
    if spec.get("tls"):
        out.w(0, "TLS:")
        for t in spec["tls"]:
            hosts = ",".join(t.get("hosts") or [])
            out.w(1, f"{t.get('secretName') or 'SNI routes'} terminates {hosts}")
    out.w(0, "Rules:")
    out.w(1, "Host", "Path", "Backends")
    out.w(1, "----", "----", "--------")
    for rule in spec.get("rules") or []:
        out.w(1, rule.get("host") or "*")
        for path in (rule.get("http") or {}).get("paths") or []:
            out.w(1, "", path.get("path") or "/", _ingress_backend(path.get("backend")))
    if not spec.get("rules"):
        out.w(1, "*", "*", _ingress_backend(spec.get("defaultBackend")))


def _networkpolicy(out: Out, o: Obj, now: datetime) -> None:
    meta, created = _meta(o), parse_time(_meta(o).get("creationTimestamp"))
    out.w(0, "Created on:", created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if created else "<unset>")
    out.multi(0, "Labels:", _kv(meta.get("labels")))
    out.multi(0, "Annotations:", _kv({k: v for k, v in (meta.get("annotations") or {}).items()
                                      if k != LAST_APPLIED_ANNOTATION}, ": "))
    for line in networkpolicy_spec_lines(o):
        out.w(0, line)


def _generic(out: Out, o: Obj, now: datetime) -> None:
    for section in ("spec", "status"):
        if isinstance(o.get(section), dict) and o[section]:
            out.w(0, f"{section.capitalize()}:")
            _nested(out, 1, o[section])


def _nested(out: Out, level: int, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.w(level, f"{k}:")
                _nested(out, level + 1, v)
            else:
                out.w(level, f"{k}:", v if v not in ({}, []) else NONE)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                out.w(level, "-")
                _nested(out, level + 1, item)
            else:
                out.w(level, f"- {item}")


_KINDS: dict[str, Callable[[Out, Obj, datetime], None]] = {
    "Pod": _pod, "Deployment": _deployment, "ReplicaSet": _replicated, "StatefulSet": _replicated,
    "DaemonSet": _replicated, "Node": _node, "Namespace": _namespace,
    "ConfigMap": _configmap, "Secret": _secret, "Job": _job, "CronJob": _cronjob, "PodDisruptionBudget": _pdb,
    "ReplicationController": _replication_controller, "ResourceQuota": _quota, "LimitRange": _limit_range,
    "Ingress": _ingress, "NetworkPolicy": _networkpolicy,
}
# Kinds kubectl describes with their name and namespace only before their own part, and without events.
_BARE = ("ResourceQuota", "LimitRange", "NetworkPolicy")


def events_section(out: Out, events: list[Obj], now: datetime) -> None:
    if not events:
        out.w(0, "Events:", NONE)
        return
    out.w(0, "Events:")
    out.w(1, "Type", "Reason", "Age", "From", "Message")
    out.w(1, "----", "------", "----", "----", "-------")
    for e in sorted(events, key=event_time):
        age = since(event_time(e) or None, now)
        count = int(e.get("count") or 1)
        if count > 1 and e.get("firstTimestamp"):
            age = f"{age} (x{count} over {since(e['firstTimestamp'], now)})"
        source = e.get("source") or {}
        origin = e.get("reportingComponent") or source.get("component") or ""
        if source.get("host"):
            origin += f", {source['host']}"
        out.w(1, e.get("type", ""), e.get("reason", ""), age, origin, (e.get("message") or "").strip())


def event_time(e: Obj) -> str:
    return str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
               or _meta(e).get("creationTimestamp") or "")


class Related(NamedTuple):
    """Other objects some describers show (fetched by the command; None: not fetched)."""
    endpoints: Obj | None = None  # a Service's Endpoints
    pods: list[Obj] | None = None  # a Node's non-terminated pods
    replicasets: list[Obj] | None = None  # the ReplicaSets a Deployment controls


def describe(res: Resource, obj: Obj, events: list[Obj] | None, now: datetime,
             related: Related | None = None) -> str:
    """The describe text of one object; `events` None leaves the Events section out (kinds without events)."""
    related = related or Related()
    out = Out()
    if res.kind in _BARE:
        out.w(0, "Name:", _meta(obj).get("name", ""))
        out.w(0, "Namespace:", _meta(obj).get("namespace", ""))
        _KINDS[res.kind](out, obj, now)
        return out.text()
    # kubectl shows CreationTimestamp for these and for kinds without their own describer.
    created = res.kind in ("Deployment", "StatefulSet", "Node") or (res.kind not in _KINDS and res.kind != "Service")
    _common(out, obj, res.namespaced, now, created=created)
    if res.kind == "Service":
        _service(out, obj, now, related.endpoints)
    else:
        _KINDS.get(res.kind, _generic)(out, obj, now)
    if res.kind == "Node" and related.pods is not None:
        _node_pods(out, obj, related.pods, now)
    if res.kind == "Deployment" and related.replicasets is not None:
        _rollout(out, obj, related.replicasets)
    if events is not None:
        events_section(out, events, now)
    return out.text()
