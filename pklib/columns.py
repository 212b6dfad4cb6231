"""Table columns per kind, matching Kubernetes' (pkg/printers/internalversion), shared by the apiserver's
server-side Tables and `pkctl get`'s client-side printing so both show the same columns.

`headers(res, wide)` gives the column names and `cells(res, obj, now, wide)` one row.
Kinds without their own table show NAME and AGE.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from pklib.api.timefmt import parse_time
from pklib.api.wellknown import DEFAULT_CLASS_ANNOTATION
from pklib.resources import Resource

NONE = "<none>"


def human_duration(seconds: float) -> str:
    """kubectl's duration.HumanDuration: precise when recent, coarse when old (`5s`, `3m2s`, `4h`, `2d`)."""
    s = int(seconds)
    # Clocks of different machines disagree a little; a second in the future still reads as "now".
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def since(timestamp: str | None, now: datetime) -> str:
    """Age of a timestamp as kubectl prints it; `<unknown>` when there is none."""
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


Obj = dict[str, Any]
Row = Callable[[Obj, datetime], list[str]]


def _meta(o: Obj) -> Obj:
    return o.get("metadata") or {}


def _spec(o: Obj) -> Obj:
    return o.get("spec") or {}


def _status(o: Obj) -> Obj:
    return o.get("status") or {}


def _age(o: Obj, now: datetime) -> str:
    return since(_meta(o).get("creationTimestamp"), now)


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def selector_string(sel: Obj | None) -> str:
    """A LabelSelector in the string form kubectl prints: `app=web,tier in (a,b),!legacy`."""
    if not sel:
        return NONE
    reqs: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        text = {"In": f"{key} in ({','.join(values)})", "NotIn": f"{key} notin ({','.join(values)})",
                "Exists": key, "DoesNotExist": f"!{key}"}.get(op, f"{key} {op}")
        reqs.append((key, text))
    return ",".join(text for _, text in sorted(reqs)) or NONE


def map_string(m: Obj | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((m or {}).items())) or NONE


def _containers_images(template_spec: Obj) -> list[str]:
    containers = template_spec.get("containers") or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def _template_spec(o: Obj) -> Obj:
    return (_spec(o).get("template") or {}).get("spec") or {}


# -- pods -----------------------------------------------------------------------------------

def pod_status_and_restarts(pod: Obj, now: datetime) -> tuple[int, int, str, str]:
    """(ready, total, STATUS, RESTARTS) computed the way kubectl's printPod does."""
    spec, status = _spec(pod), _status(pod)
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}

    def sidecar(name: Any) -> bool:
        return (init_specs.get(name) or {}).get("restartPolicy") == "Always"

    total = len(spec.get("containers") or []) + sum(1 for n in init_specs if sidecar(n))
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    def later(a: datetime | None, cs: Obj) -> datetime | None:
        t = parse_time(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        return t if t and (a is None or t > a) else a

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += _int(cs.get("restartCount"))
        last_restart = later(last_restart, cs)
        if sidecar(cs.get("name")):
            sidecar_restarts += _int(cs.get("restartCount"))
            last_sidecar_restart = later(last_sidecar_restart, cs)
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term and _int(term.get("exitCode")) == 0:
            continue
        if sidecar(cs.get("name")) and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if term:
            if term.get("reason"):
                reason = "Init:" + term["reason"]
            elif _int(term.get("signal")):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{_int(term.get('exitCode'))}"
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in status.get("conditions") or [])
    if not initializing or initialized:
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += _int(cs.get("restartCount"))
            last_restart = later(last_restart, cs)
            state = cs.get("state") or {}
            term, waiting = state.get("terminated"), state.get("waiting")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                signal = _int(term.get("signal"))
                reason = f"Signal:{signal}" if signal else f"ExitCode:{_int(term.get('exitCode'))}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or [])
            reason = "Running" if pod_ready else "NotReady"

    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({since(last_restart.isoformat(), now)} ago)"
    return ready, total, reason, restarts_text


def _pod(o: Obj, now: datetime) -> list[str]:
    ready, total, reason, restarts = pod_status_and_restarts(o, now)
    return [f"{ready}/{total}", reason, restarts, _age(o, now)]


def _pod_wide(o: Obj, now: datetime) -> list[str]:
    gates = _spec(o).get("readinessGates") or []
    gates_text = NONE
    if gates:
        conds = {c.get("type"): c.get("status") for c in _status(o).get("conditions") or []}
        true = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_text = f"{true}/{len(gates)}"
    return [_status(o).get("podIP") or NONE, _spec(o).get("nodeName") or NONE,
            _status(o).get("nominatedNodeName") or NONE, gates_text]


# -- workloads ------------------------------------------------------------------------------

def _deployment(o: Obj, now: datetime) -> list[str]:
    s = _status(o)
    return [f"{_int(s.get('readyReplicas'))}/{_int(_spec(o).get('replicas'))}", str(_int(s.get("updatedReplicas"))),
            str(_int(s.get("availableReplicas"))), _age(o, now)]


def _workload_wide(o: Obj, now: datetime) -> list[str]:
    return [*_containers_images(_template_spec(o)), selector_string(_spec(o).get("selector"))]


def _replicaset(o: Obj, now: datetime) -> list[str]:
    s = _status(o)
    return [str(_int(_spec(o).get("replicas"))), str(_int(s.get("replicas"))), str(_int(s.get("readyReplicas"))),
            _age(o, now)]


def _daemonset(o: Obj, now: datetime) -> list[str]:
    s = _status(o)
    counts = [s.get(k) for k in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                                 "updatedNumberScheduled", "numberAvailable")]
    return [*(str(_int(c)) for c in counts), map_string(_template_spec(o).get("nodeSelector")), _age(o, now)]


def _statefulset(o: Obj, now: datetime) -> list[str]:
    return [f"{_int(_status(o).get('readyReplicas'))}/{_int(_spec(o).get('replicas'))}", _age(o, now)]


def _statefulset_wide(o: Obj, now: datetime) -> list[str]:
    return _containers_images(_template_spec(o))


def _has_condition(o: Obj, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in _status(o).get("conditions") or [])


def _job(o: Obj, now: datetime) -> list[str]:
    spec, status = _spec(o), _status(o)
    succeeded = _int(status.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec['completions'])}"
    elif _int(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {_int(spec['parallelism'])}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration(((end or now) - start).total_seconds())
    if _has_condition(o, "Complete"):
        state = "Complete"
    elif _has_condition(o, "Failed"):
        state = "Failed"
    elif _meta(o).get("deletionTimestamp"):
        state = "Terminating"
    elif _has_condition(o, "Suspended"):
        state = "Suspended"
    elif _has_condition(o, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    return [state, completions, duration, _age(o, now)]


def _bool_ptr(value: Any) -> str:
    return "<unset>" if value is None else str(bool(value))


def _cronjob(o: Obj, now: datetime) -> list[str]:
    spec, status = _spec(o), _status(o)
    last = status.get("lastScheduleTime")
    return [spec.get("schedule") or "", spec.get("timeZone") or NONE, _bool_ptr(spec.get("suspend")),
            str(len(status.get("active") or [])), since(last, now) if last else NONE, _age(o, now)]


def _cronjob_wide(o: Obj, now: datetime) -> list[str]:
    job_spec = (_spec(o).get("jobTemplate") or {}).get("spec") or {}
    return [*_containers_images((job_spec.get("template") or {}).get("spec") or {}),
            selector_string(job_spec.get("selector"))]


# -- networking -----------------------------------------------------------------------------

def _service_ports(spec: Obj) -> str:
    parts = []
    for p in spec.get("ports") or []:
        text = str(p.get("port", ""))
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        parts.append(f"{text}/{p.get('protocol') or 'TCP'}")
    return ",".join(parts) or NONE


def _external_ip(o: Obj) -> str:
    spec = _spec(o)
    svc_type = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if svc_type == "ExternalName":
        return spec.get("externalName") or NONE
    if svc_type == "LoadBalancer":
        balancer = _status(o).get("loadBalancer") or {}
        ingress = [i.get("ip") or i.get("hostname") for i in balancer.get("ingress") or []]
        external = [*(i for i in ingress if i), *external]
        return ",".join(external) or "<pending>"
    return ",".join(external) or NONE


def _service(o: Obj, now: datetime) -> list[str]:
    spec = _spec(o)
    return [spec.get("type") or "ClusterIP", spec.get("clusterIP") or NONE, _external_ip(o), _service_ports(spec),
            _age(o, now)]


def _service_wide(o: Obj, now: datetime) -> list[str]:
    return [map_string(_spec(o).get("selector"))]


def _first_three(items: list[str], total: int) -> str:
    text = ",".join(items[:3])
    return f"{text} + {total - 3} more..." if total > 3 else (text or NONE)


def _endpoints(o: Obj, now: datetime) -> list[str]:
    addrs: list[str] = []
    for subset in o.get("subsets") or []:
        ips = [a.get("ip", "") for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        if not ports:
            addrs.extend(ips)
        for p in ports:
            addrs.extend(f"[{ip}]:{p.get('port')}" if ":" in ip else f"{ip}:{p.get('port')}" for ip in ips)
    return [_first_three(addrs, len(addrs)), _age(o, now)]


def _endpointslice(o: Obj, now: datetime) -> list[str]:
    ports = [str(p["port"]) if p.get("port") is not None else "<unset>" for p in o.get("ports") or []]
    addrs = [a for ep in o.get("endpoints") or [] for a in ep.get("addresses") or []]
    endpoints = _first_three(addrs, len(addrs)) if addrs else "<unset>"
    return [o.get("addressType") or "", ",".join(ports) or "<unset>", endpoints, _age(o, now)]


# -- cluster --------------------------------------------------------------------------------

def _node(o: Obj, now: datetime) -> list[str]:
    status = "Unknown"
    for cond in _status(o).get("conditions") or []:
        if cond.get("type") == "Ready":
            status = {"True": "Ready", "False": "NotReady"}.get(cond.get("status") or "", "Unknown")
    if _spec(o).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted({k.split("/", 1)[1] for k in (_meta(o).get("labels") or {})
                    if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]})
    version = (_status(o).get("nodeInfo") or {}).get("kubeletVersion") or ""
    return [status, ",".join(roles) or NONE, _age(o, now), version]


def _node_wide(o: Obj, now: datetime) -> list[str]:
    addresses = _status(o).get("addresses") or []

    def addr(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), NONE)

    info = _status(o).get("nodeInfo") or {}
    return [addr("InternalIP"), addr("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


def _namespace(o: Obj, now: datetime) -> list[str]:
    return [_status(o).get("phase") or "", _age(o, now)]


def _configmap(o: Obj, now: datetime) -> list[str]:
    return [str(len(o.get("data") or {}) + len(o.get("binaryData") or {})), _age(o, now)]


def _secret(o: Obj, now: datetime) -> list[str]:
    return [o.get("type") or "Opaque", str(len(o.get("data") or {})), _age(o, now)]


def _serviceaccount(o: Obj, now: datetime) -> list[str]:
    return [str(len(o.get("secrets") or [])), _age(o, now)]


_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def _modes(modes: list[str] | None) -> str:
    return ",".join(_ACCESS_MODES.get(m, m) for m in modes or [])


def _storage_class(o: Obj) -> str:
    return (_spec(o).get("storageClassName")
            or (_meta(o).get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class") or "")


def _pvc(o: Obj, now: datetime) -> list[str]:
    spec, status = _spec(o), _status(o)
    bound = status.get("phase") == "Bound"
    capacity = (status.get("capacity") or {}).get("storage", "") if bound else ""
    modes = _modes(status.get("accessModes")) if bound else ""
    return [status.get("phase") or "", spec.get("volumeName") or "", capacity, modes, _storage_class(o),
            spec.get("volumeAttributesClassName") or "<unset>", _age(o, now)]


def _pvc_wide(o: Obj, now: datetime) -> list[str]:
    return [_spec(o).get("volumeMode") or "<unset>"]


def _pv(o: Obj, now: datetime) -> list[str]:
    spec, status = _spec(o), _status(o)
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    return [(spec.get("capacity") or {}).get("storage", ""), _modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy") or "", status.get("phase") or "", claim, _storage_class(o),
            spec.get("volumeAttributesClassName") or "<unset>", status.get("reason") or "", _age(o, now)]


def _event(o: Obj, now: datetime) -> list[str]:
    last = o.get("lastTimestamp") or o.get("eventTime") or _meta(o).get("creationTimestamp")
    last_seen = since(last, now)
    count = _int(o.get("count"))
    if count > 1 and o.get("firstTimestamp"):
        last_seen = f"{last_seen} (x{count} over {since(o['firstTimestamp'], now)})"
    inv = o.get("involvedObject") or {}
    return [last_seen, o.get("type") or "", o.get("reason") or "",
            f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}", o.get("message") or ""]


def _lease(o: Obj, now: datetime) -> list[str]:
    return [_spec(o).get("holderIdentity") or "", _age(o, now)]


def _storageclass(o: Obj, now: datetime) -> list[str]:
    return [o.get("provisioner") or "", o.get("reclaimPolicy") or "Delete",
            o.get("volumeBindingMode") or "Immediate", str(bool(o.get("allowVolumeExpansion"))).lower(), _age(o, now)]


def _priorityclass(o: Obj, now: datetime) -> list[str]:
    return [str(o.get("value", "")), str(bool(o.get("globalDefault"))).lower(), _age(o, now),
            o.get("preemptionPolicy") or ""]


def _csr(o: Obj, now: datetime) -> list[str]:
    spec = _spec(o)
    seconds = spec.get("expirationSeconds")
    conditions = [c.get("type", "") for c in (o.get("status") or {}).get("conditions") or []
                  if c.get("status", "True") == "True"]
    if (o.get("status") or {}).get("certificate"):
        conditions.append("Issued")
    return [_age(o, now), spec.get("signerName") or "", spec.get("username") or "",
            human_duration(float(seconds)) if isinstance(seconds, int) else "<none>", ",".join(conditions) or "Pending"]


def _pdb(o: Obj, now: datetime) -> list[str]:
    spec = _spec(o)
    return [str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
            str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
            str(_int(_status(o).get("disruptionsAllowed"))), _age(o, now)]


def _rc_wide(o: Obj, now: datetime) -> list[str]:
    return [*_containers_images(_template_spec(o)), map_string(_spec(o).get("selector"))]


def _resourcequota(o: Obj, now: datetime) -> list[str]:
    # kubectl's printResourceQuota: used/hard per resource of spec.hard, limits.* in their own column.
    status = _status(o)
    used, hard = status.get("used") or {}, status.get("hard") or {}
    request: list[str] = []
    limit: list[str] = []
    for name in sorted(_spec(o).get("hard") or {}):
        column = limit if name.split(".")[0] == "limits" and "." in name else request
        column.append(f"{name}: {used.get(name, '0')}/{hard.get(name, '0')}")
    return [_age(o, now), ", ".join(request), ", ".join(limit)]


def _apiservice(o: Obj, now: datetime) -> list[str]:
    service = _spec(o).get("service")
    where = f"{service.get('namespace', '')}/{service.get('name', '')}" if isinstance(service, dict) else "Local"
    available = next((c for c in _status(o).get("conditions") or [] if c.get("type") == "Available"), None)
    if available is None:
        shown = "Unknown"
    elif available.get("status") == "True":
        shown = "True"
    else:
        shown = f"{available.get('status')} ({available.get('reason', '')})"
    return [where, shown, _age(o, now)]


def _hpa_metric(metric: Obj, current: Obj | None) -> str:
    """One metric of the TARGETS column, as kubectl formats it: `cpu: 40%/80%`, `memory: 10Mi/100Mi`,
    `5/10` (Pods), `5/10 (avg)` (Object/External average values)."""
    kind = metric.get("type", "")
    member = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods", "Object": "object",
              "External": "external"}.get(kind)
    if member is None:
        return "<unknown type>"
    source, now_value = metric.get(member) or {}, ((current or {}).get(member) or {}).get("current") or {}
    target = source.get("target") or {}
    if kind in ("Pods", "Object", "External"):
        if kind == "Pods" or "averageValue" in target:
            shown = f"{now_value.get('averageValue', '<unknown>')}/{target.get('averageValue', '')}"
            return shown if kind == "Pods" else shown + " (avg)"
        return f"{now_value.get('value', '<unknown>')}/{target.get('value', '')}"
    if "averageValue" in target:
        return f"{source.get('name', '')}: {now_value.get('averageValue', '<unknown>')}/{target['averageValue']}"
    shown = f"{now_value['averageUtilization']}%" if "averageUtilization" in now_value else "<unknown>"
    wanted = f"{target['averageUtilization']}%" if "averageUtilization" in target else "<auto>"
    return f"{source.get('name', '')}: {shown}/{wanted}"


def _hpa(o: Obj, now: datetime) -> list[str]:
    from pklib.api import autoscaling  # only HPAs: a `get pods` starts without it
    if o.get("apiVersion") == autoscaling.V1:  # the same row whichever version is listed
        o = autoscaling.to_v2(o)
    spec, status = _spec(o), _status(o)
    ref = spec.get("scaleTargetRef") or {}
    metrics, currents = spec.get("metrics") or [], status.get("currentMetrics") or []
    shown = [_hpa_metric(m, currents[i] if i < len(currents) else None) for i, m in enumerate(metrics)]
    targets = ", ".join(shown[:2]) + (f" + {len(shown) - 2} more..." if len(shown) > 2 else "") if shown else "<none>"
    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", targets,
            str(spec["minReplicas"]) if "minReplicas" in spec else "<unset>", str(_int(spec.get("maxReplicas"))),
            str(_int(status.get("currentReplicas"))), _age(o, now)]


def _ingress(o: Obj, now: datetime) -> list[str]:
    spec = _spec(o)
    hosts = [r.get("host") or "*" for r in spec.get("rules") or []]
    shown = ",".join(hosts[:4]) + (f" + {len(hosts) - 4} more..." if len(hosts) > 4 else "")
    balancer = _status(o).get("loadBalancer") or {}
    address = ",".join(i.get("ip") or i.get("hostname") or "" for i in balancer.get("ingress") or [])
    return [spec.get("ingressClassName") or NONE, shown or "*", address, "80, 443" if spec.get("tls") else "80",
            _age(o, now)]


def _ingressclass(o: Obj, now: datetime) -> list[str]:
    spec = _spec(o)
    params = spec.get("parameters")
    shown = NONE
    if isinstance(params, dict):
        group = f".{params['apiGroup']}" if params.get("apiGroup") else ""
        shown = f"{params.get('kind', '')}{group}/{params.get('name', '')}"
    return [spec.get("controller") or "", shown, _age(o, now)]


def _networkpolicy(o: Obj, now: datetime) -> list[str]:
    return [selector_string(_spec(o).get("podSelector")), _age(o, now)]


def _created_at(o: Obj, now: datetime) -> list[str]:
    return [_meta(o).get("creationTimestamp") or ""]


def _role_binding(o: Obj, now: datetime) -> list[str]:
    ref = o.get("roleRef") or {}
    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(o, now)]


def _role_binding_wide(o: Obj, now: datetime) -> list[str]:
    users: list[str] = []
    groups: list[str] = []
    accounts: list[str] = []
    for s in o.get("subjects") or []:
        kind, name = s.get("kind"), s.get("name", "")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            accounts.append(f"{s.get('namespace') or ''}/{name}")
    return [", ".join(users), ", ".join(groups), ", ".join(accounts)]


def _name_suffix(res: Resource, o: Obj) -> str:
    annotations = _meta(o).get("annotations") or {}
    if res.kind == "StorageClass" and annotations.get(DEFAULT_CLASS_ANNOTATION) == "true":
        return " (default)"
    return ""


def _age_only(o: Obj, now: datetime) -> list[str]:
    return [_age(o, now)]


def _nothing(o: Obj, now: datetime) -> list[str]:
    return []


# kind -> (headers after NAME, row, wide headers, wide row)
_TABLES: dict[str, tuple[list[str], Row, list[str], Row]] = {
    "Pod": (["READY", "STATUS", "RESTARTS", "AGE"], _pod, ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
            _pod_wide),
    "Deployment": (["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], _deployment, ["CONTAINERS", "IMAGES", "SELECTOR"],
                   _workload_wide),
    "ReplicaSet": (["DESIRED", "CURRENT", "READY", "AGE"], _replicaset, ["CONTAINERS", "IMAGES", "SELECTOR"],
                   _workload_wide),
    "DaemonSet": (["DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"], _daemonset,
                  ["CONTAINERS", "IMAGES", "SELECTOR"], _workload_wide),
    "StatefulSet": (["READY", "AGE"], _statefulset, ["CONTAINERS", "IMAGES"], _statefulset_wide),
    "Job": (["STATUS", "COMPLETIONS", "DURATION", "AGE"], _job, ["CONTAINERS", "IMAGES", "SELECTOR"], _workload_wide),
    "CronJob": (["SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"], _cronjob,
                ["CONTAINERS", "IMAGES", "SELECTOR"], _cronjob_wide),
    "Service": (["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], _service, ["SELECTOR"], _service_wide),
    "Endpoints": (["ENDPOINTS", "AGE"], _endpoints, [], _nothing),
    "EndpointSlice": (["ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], _endpointslice, [], _nothing),
    "Node": (["STATUS", "ROLES", "AGE", "VERSION"], _node,
             ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"], _node_wide),
    "Namespace": (["STATUS", "AGE"], _namespace, [], _nothing),
    "ConfigMap": (["DATA", "AGE"], _configmap, [], _nothing),
    "Secret": (["TYPE", "DATA", "AGE"], _secret, [], _nothing),
    "ServiceAccount": (["SECRETS", "AGE"], _serviceaccount, [], _nothing),
    "PersistentVolumeClaim": (["STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS",
                               "AGE"], _pvc, ["VOLUMEMODE"], _pvc_wide),
    "PersistentVolume": (["CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS",
                          "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"], _pv, ["VOLUMEMODE"], _pvc_wide),
    "Lease": (["HOLDER", "AGE"], _lease, [], _nothing),
    "StorageClass": (["PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"],
                     _storageclass, [], _nothing),
    "PriorityClass": (["VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"], _priorityclass, [], _nothing),
    "ReplicationController": (["DESIRED", "CURRENT", "READY", "AGE"], _replicaset, ["CONTAINERS", "IMAGES", "SELECTOR"],
                              _rc_wide),
    "ResourceQuota": (["AGE", "REQUEST", "LIMIT"], _resourcequota, [], _nothing),
    "LimitRange": (["CREATED AT"], _created_at, [], _nothing),
    "APIService": (["SERVICE", "AVAILABLE", "AGE"], _apiservice, [], _nothing),
    "CertificateSigningRequest": (["AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"], _csr, [],
                                  _nothing),
    "PodDisruptionBudget": (["MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"], _pdb, [], _nothing),
    "HorizontalPodAutoscaler": (["REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"], _hpa, [], _nothing),
    "Ingress": (["CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], _ingress, [], _nothing),
    "IngressClass": (["CONTROLLER", "PARAMETERS", "AGE"], _ingressclass, [], _nothing),
    "NetworkPolicy": (["POD-SELECTOR", "AGE"], _networkpolicy, [], _nothing),
    "Role": (["CREATED AT"], _created_at, [], _nothing),
    "ClusterRole": (["CREATED AT"], _created_at, [], _nothing),
    "CustomResourceDefinition": (["CREATED AT"], _created_at, [], _nothing),
    "RoleBinding": (["ROLE", "AGE"], _role_binding, ["USERS", "GROUPS", "SERVICEACCOUNTS"], _role_binding_wide),
    "ClusterRoleBinding": (["ROLE", "AGE"], _role_binding, ["USERS", "GROUPS", "SERVICEACCOUNTS"],
                           _role_binding_wide),
}
# Events have no NAME column first: kubectl leads with LAST SEEN and names the object instead.
_EVENT_HEADERS = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]


def headers(res: Resource, wide: bool = False) -> list[str]:
    if res.kind == "Event":
        return list(_EVENT_HEADERS)
    head, _, wide_head, _ = _TABLES.get(res.kind, (["AGE"], _age_only, [], _nothing))
    return ["NAME", *head, *(wide_head if wide else [])]


def cells(res: Resource, obj: Obj, now: datetime, wide: bool = False, name: str | None = None) -> list[str]:
    """One table row; `name` overrides the NAME cell (kubectl writes `pod/x` when several kinds are listed)."""
    if res.kind == "Event":
        return _event(obj, now)
    _, row, _, wide_row = _TABLES.get(res.kind, (["AGE"], _age_only, [], _nothing))
    first = (name if name is not None else _meta(obj).get("name", "")) + _name_suffix(res, obj)
    return [first, *row(obj, now), *(wide_row(obj, now) if wide else [])]
