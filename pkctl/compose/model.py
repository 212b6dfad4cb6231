"""A Compose file read into a typed project: YAML with line numbers, `${VAR:-default}` interpolation from `.env`
and the environment, and the subset of the Compose specification pkube runs. Every key outside that subset is
an error naming the key and its line (never silently dropped); `version:` is accepted and ignored, `x-*`
extension keys are allowed anywhere, as the specification says.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from pklib.yamlsafe import BoundedLoader

from ..generators import GeneratorError, published_ports

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")


class ComposeError(Exception):
    pass


class Located(dict[str, Any]):
    """A mapping from the file, with the line (1-based) of each of its keys."""
    lines: dict[str, int]
    line: int


class _Loader(BoundedLoader):
    def construct_mapping(self, node: Any, deep: bool = False) -> Located:  # type: ignore[override]
        self.flatten_mapping(node)
        out = Located()
        out.lines, out.line = {}, node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            out[str(key)] = self.construct_object(value_node, deep=True)
            out.lines[str(key)] = key_node.start_mark.line + 1
        return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)


@dataclass
class Port:
    container: int
    host: int | None = None
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass
class Mount:
    kind: str  # volume (named), bind, tmpfs, anonymous
    target: str
    source: str = ""
    read_only: bool = False


@dataclass
class Healthcheck:
    test: list[str]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0


@dataclass
class Build:
    context: Path
    dockerfile: Path | None = None
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass
class Service:
    name: str
    image: str = ""
    build: Build | None = None
    ports: list[Port] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    mounts: list[Mount] = field(default_factory=list)
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition
    healthcheck: Healthcheck | None = None
    healthcheck_set: bool = False  # the file has a healthcheck key (else the image's HEALTHCHECK applies)
    restart: str = ""
    replicas: int = 1
    limits: dict[str, str] = field(default_factory=dict)  # Kubernetes resource names and quantities
    requests: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # network -> this service's aliases on it (`networks:`; every service is on `default` unless it names its
    # networks; none with the host network)
    networks: dict[str, list[str]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # `links`: alias -> the service it names
    host_network: bool = False
    profiles: list[str] = field(default_factory=list)
    stop_grace_period: float = 10.0  # Compose's default; a pod's would be 30 s
    # the ID of the image `up` built (or found) for a `build:` service; a rebuilt image rolls its pods, as Docker
    # Compose recreates a container whose image changed
    image_id: str = ""


@dataclass
class Project:
    name: str
    directory: Path
    services: dict[str, Service]
    volumes: dict[str, str]  # named volume -> its name in the cluster (the PVC)
    networks: dict[str, str] = field(default_factory=dict)  # network (file's name) -> its Kubernetes name
    warnings: list[str] = field(default_factory=list)  # keys accepted without effect, for stderr


SERVICE_KEYS = {"image", "build", "ports", "expose", "environment", "env_file", "command", "entrypoint", "volumes",
                "depends_on", "healthcheck", "restart", "deploy", "working_dir", "user", "labels", "links",
                "network_mode", "profiles", "stop_grace_period", "container_name", "hostname", "networks", "stdin_open", "tty"}
# Accepted, but with no effect here: said on stderr, never silently.
IGNORED_SERVICE_KEYS = {"container_name": "pods are named by their Deployment",
                        "hostname": "a pod's hostname is its name",
                        "stdin_open": "not attached", "tty": "not attached"}
TOP_KEYS = {"version", "name", "services", "volumes", "networks"}
NETWORK_KEYS = {"name", "driver", "driver_opts", "labels", "external", "internal", "attachable", "ipam", "enable_ipv6"}
IGNORED_NETWORK_KEYS = {"driver_opts": "there is no network driver to pass them to",
                        "ipam": "pod addresses come from their node's pod CIDR",
                        "internal": "pods keep their route out of the cluster",
                        "attachable": "only the project's services join its networks",
                        "enable_ipv6": "pods have the cluster's address families"}
SERVICE_NETWORK_KEYS = {"aliases", "priority", "gw_priority"}
# A network is a pod label `com.docker.compose.network.<name>`: a label name has at most 63 characters.
NETWORK_LABEL_PREFIX = "com.docker.compose.network."
_NETWORK_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _where(source: str, m: Mapping[str, Any], key: str) -> str:
    lines = getattr(m, "lines", {})
    return f"{source}:{lines[key]}" if key in lines else source


def _check_keys(source: str, m: Mapping[str, Any], allowed: set[str], what: str) -> None:
    for key in m:
        if key not in allowed and not key.startswith("x-"):
            raise ComposeError(f"{_where(source, m, key)}: {what}: unsupported key {key!r}")


# ---- interpolation ------------------------------------------------------------------------------------------
_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: Mapping[str, str], where: str = "") -> str:
    """`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `$$` -> `$`."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m["bare"]:
            return env.get(m["bare"], "")
        expr = m["braced"]
        found = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", expr, re.S)
        if not found:
            raise ComposeError(f"{where}: invalid interpolation format {m.group(0)!r}")
        name, op, arg = found.group(1), found.group(2), found.group(3) or ""
        value = env.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return interpolate(arg, env, where) if unset_or_empty else str(value)
        if op in (":?", "?"):
            if unset_or_empty:
                raise ComposeError(f"{where}: required variable {name} is missing a value: {arg or name}")
            return str(value)
        if op in (":+", "+"):
            return "" if unset_or_empty else interpolate(arg, env, where)
        return value or ""
    return _VAR.sub(one, text)


def _interpolate_all(value: Any, env: Mapping[str, str], source: str, where: str) -> Any:
    if isinstance(value, str):
        return interpolate(value, env, where)
    if isinstance(value, dict):
        for k in list(value):
            value[k] = _interpolate_all(value[k], env, source, _where(source, value, k))
        return value
    if isinstance(value, list):
        return [_interpolate_all(v, env, source, where) for v in value]
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (`export`, comments, quotes as Docker's .env parser takes them)."""
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError as e:
        raise ComposeError(f"cannot read env file {path}: {e.strerror}") from None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key.strip()):
            raise ComposeError(f"{path}:{n}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    return out


# ---- loading -----------------------------------------------------------------------------------------------
def find_file(directory: Path) -> Path:
    for name in DEFAULT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise ComposeError(f"no configuration file provided: not found ({', '.join(DEFAULT_FILES)} in {directory})")


def normalize_project_name(name: str) -> str:
    """A project name usable as a namespace (Compose keeps [a-z0-9_-]; a namespace has no `_`)."""
    out = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63].strip("-")
    if not out:
        raise ComposeError(f"invalid project name {name!r}: use lower case letters, digits and '-'")
    return out


def load(file: Path, project_name: str | None = None, environ: Mapping[str, str] | None = None,
         profiles: list[str] | None = None) -> Project:
    directory = file.resolve().parent
    env = {**(read_env_file(directory / ".env") if (directory / ".env").is_file() else {}),
           **(os.environ if environ is None else environ)}
    source = str(file)
    try:
        doc = yaml.load(file.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except OSError as e:
        raise ComposeError(f"cannot read {file}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ComposeError(f"{source}:{mark.line + 1 if mark else '?'}: invalid YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise ComposeError(f"{source}: top-level object must be a mapping")
    _check_keys(source, doc, TOP_KEYS, "top level")
    doc = _interpolate_all(doc, env, source, source)
    name = normalize_project_name(project_name or env.get("COMPOSE_PROJECT_NAME") or doc.get("name")
                                  or directory.name)
    active = set(profiles if profiles is not None else filter(None, env.get("COMPOSE_PROFILES", "").split(",")))
    services_doc = doc.get("services")
    if not isinstance(services_doc, dict) or not services_doc:
        raise ComposeError(f"{_where(source, doc, 'services')}: services must be a non-empty mapping")
    volumes_doc = doc.get("volumes") or {}
    if not isinstance(volumes_doc, dict):
        raise ComposeError(f"{_where(source, doc, 'volumes')}: volumes must be a mapping")
    volumes = {}
    for vname, vdef in volumes_doc.items():
        vdef = vdef or {}
        if not isinstance(vdef, dict):
            raise ComposeError(f"{_where(source, volumes_doc, vname)}: volume {vname!r} must be a mapping")
        _check_keys(source, vdef, {"name", "driver", "labels"}, f"volume {vname!r}")
        if vdef.get("driver") not in (None, "local"):
            raise ComposeError(f"{_where(source, vdef, 'driver')}: volume {vname!r}: only the local driver exists")
        volumes[vname] = _dns_name(str(vdef.get("name") or vname), source, volumes_doc, vname, "volume")
    services = {}
    warnings: list[str] = []
    networks = _networks(source, doc, warnings)
    for sname, sdef in services_doc.items():
        if not isinstance(sdef, dict):
            raise ComposeError(f"{_where(source, services_doc, sname)}: service {sname!r} must be a mapping")
        warnings += [f"{_where(source, sdef, key)}: service {sname!r}: {key} is ignored: {why}"
                     for key, why in IGNORED_SERVICE_KEYS.items() if key in sdef]
        svc = _service(source, sname, sdef, directory, env, volumes, services_doc)
        _service_networks(source, svc, sdef, networks, warnings)
        if not svc.profiles or active & set(svc.profiles):
            services[sname] = svc
    for svc in services.values():
        for dep in svc.depends_on:
            if dep not in services:
                raise ComposeError(f"{source}: service {svc.name!r} depends on undefined service {dep!r}")
    return Project(name, directory, services, volumes, networks, warnings)


def _networks(source: str, doc: Mapping[str, Any], warnings: list[str]) -> dict[str, str]:
    """Top-level `networks`: name -> its Kubernetes name (the NetworkPolicy's); `default` always exists."""
    networks_doc = doc.get("networks") or {}
    if not isinstance(networks_doc, dict):
        raise ComposeError(f"{_where(source, doc, 'networks')}: networks must be a mapping")
    out = {"default": "default"}
    for net, ndef in networks_doc.items():
        ndef = ndef or {}
        where = _where(source, networks_doc, net)
        if not isinstance(ndef, dict):
            raise ComposeError(f"{where}: network {net!r} must be a mapping")
        _check_keys(source, ndef, NETWORK_KEYS, f"network {net!r}")
        if not _NETWORK_NAME.match(net) or len(NETWORK_LABEL_PREFIX + net) > 63:
            raise ComposeError(f"{where}: network name {net!r}: use at most {63 - len(NETWORK_LABEL_PREFIX)} letters, "
                               "digits, '-', '_' or '.' (it becomes a pod label)")
        if ndef.get("external"):
            raise ComposeError(f"{_where(source, ndef, 'external')}: network {net!r}: external networks are not "
                               "supported: a project's networks live in its namespace; declare it without external")
        if ndef.get("driver") not in (None, "bridge"):
            raise ComposeError(f"{_where(source, ndef, 'driver')}: network {net!r}: driver {ndef['driver']!r} is not "
                               "supported: only bridge (pods reach each other on the cluster network)")
        warnings += [f"{_where(source, ndef, key)}: network {net!r}: {key} is ignored: {why}"
                     for key, why in IGNORED_NETWORK_KEYS.items() if key in ndef]
        kube = re.sub(r"[^a-z0-9-]", "-", net.lower()).strip("-")
        if kube in out.values() and out.get(net) != kube:
            raise ComposeError(f"{where}: network {net!r}: its Kubernetes name {kube!r} is another network's")
        out[net] = kube
    return out


def _service_networks(source: str, svc: Service, d: Mapping[str, Any], networks: Mapping[str, str],
                      warnings: list[str]) -> None:
    """A service's `networks`: a list, or a mapping whose values may give `aliases` on that network."""
    at = lambda key: _where(source, d, key)  # noqa: E731
    value = d.get("networks")
    if value is not None and d.get("network_mode") is not None:
        raise ComposeError(f"{at('networks')}: service {svc.name!r}: network_mode and networks are mutually "
                           "exclusive")
    if svc.host_network:
        return
    if value is None:
        svc.networks = {"default": []}
    elif isinstance(value, list):
        svc.networks = {str(n): [] for n in value}
    elif isinstance(value, dict):
        for net, spec in value.items():
            spec = spec or {}
            if not isinstance(spec, dict):
                raise ComposeError(f"{_where(source, value, net)}: service {svc.name!r} network {net!r} must be a "
                                   "mapping")
            _check_keys(source, spec, SERVICE_NETWORK_KEYS, f"service {svc.name!r} network {net!r}")
            warnings += [f"{_where(source, spec, key)}: service {svc.name!r} network {net!r}: {key} is ignored: "
                         "pods have one interface" for key in ("priority", "gw_priority") if key in spec]
            aliases = spec.get("aliases") or []
            if not isinstance(aliases, list):
                raise ComposeError(f"{_where(source, spec, 'aliases')}: aliases must be a list")
            svc.networks[str(net)] = [_dns_name(str(a), source, spec, "aliases", "network alias") for a in aliases]
    else:
        raise ComposeError(f"{at('networks')}: networks must be a list or a mapping")
    for net in svc.networks:
        if net not in networks:
            raise ComposeError(f"{at('networks')}: service {svc.name!r} refers to undefined network {net}: declare "
                               "it under the top-level networks")


def _dns_name(name: str, source: str, m: Mapping[str, Any], key: str, what: str) -> str:
    if not _LABEL.match(name) or len(name) > 63:
        raise ComposeError(f"{_where(source, m, key)}: {what} name {name!r} must be a DNS label (lower case "
                           "letters, digits and '-') to be a Kubernetes name")
    return name


def _words(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise ComposeError(f"{where}: {key}: {e}") from None
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ComposeError(f"{where}: {key} must be a string or a list")


def _duration(value: Any, where: str) -> float:
    """Compose durations: `1m30s`, `500ms`, `10s`, or seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?", str(value).strip())
    if not m or not any(m.groups()):
        raise ComposeError(f"{where}: invalid duration {value!r}")
    h, mi, s, ms = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0) + int(ms or 0) / 1000


def _memory(value: Any, where: str) -> str:
    """Docker's byte amounts (`512m`, `1g`, `1024k`, binary units) -> a Kubernetes quantity."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", str(value).strip().lower())
    if not m:
        raise ComposeError(f"{where}: invalid memory amount {value!r}")
    number, unit = m.groups()
    suffix = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}[unit]
    return number + suffix


def _resources(source: str, res: Any) -> tuple[dict[str, str], dict[str, str]]:
    if not isinstance(res, dict):
        return {}, {}
    _check_keys(source, res, {"limits", "reservations"}, "deploy.resources")
    out: list[dict[str, str]] = []
    for part in ("limits", "reservations"):
        spec = res.get(part) or {}
        _check_keys(source, spec, {"cpus", "memory"}, f"deploy.resources.{part}")
        q: dict[str, str] = {}
        if spec.get("cpus") is not None:
            q["cpu"] = str(spec["cpus"])
        if spec.get("memory") is not None:
            q["memory"] = _memory(spec["memory"], _where(source, spec, "memory"))
        out.append(q)
    return out[0], out[1]


def _service(source: str, name: str, d: Mapping[str, Any], directory: Path, env: Mapping[str, str],
             volumes: dict[str, str], parent: Mapping[str, Any]) -> Service:
    try:
        return _service_fields(source, name, d, directory, env, volumes, parent)
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # a value of the wrong shape somewhere deeper
        what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise ComposeError(f"{_where(source, parent, name)}: service {name!r}: invalid value: {what}") from None


def _service_fields(source: str, name: str, d: Mapping[str, Any], directory: Path, env: Mapping[str, str],
                    volumes: dict[str, str], parent: Mapping[str, Any]) -> Service:
    where = _where(source, parent, name)
    _dns_name(name, source, parent, name, "service")
    _check_keys(source, d, SERVICE_KEYS, f"service {name!r}")
    svc = Service(name)
    at = lambda key: _where(source, d, key)  # noqa: E731
    svc.image = str(d.get("image") or "")
    if d.get("build") is not None:
        b = d["build"]
        if isinstance(b, str):
            b = {"context": b}
        if not isinstance(b, dict):
            raise ComposeError(f"{at('build')}: build must be a path or a mapping")
        _check_keys(source, b, {"context", "dockerfile", "args", "target"}, f"service {name!r} build")
        context = (directory / str(b.get("context") or ".")).resolve()
        args = b.get("args") or {}
        if isinstance(args, list):
            args = dict(a.partition("=")[::2] for a in map(str, args))
        svc.build = Build(context, context / str(b["dockerfile"]) if b.get("dockerfile") else None,
                          {str(k): str(v) for k, v in args.items() if v is not None}, b.get("target"))
    if not svc.image and svc.build is None:
        raise ComposeError(f"{where}: service {name!r} has neither an image nor build context specified")
    for p in _list(d, "ports", at):
        svc.ports += _port(p, at("ports"))
    for p in _list(d, "expose", at):  # container ports only
        svc.ports += [Port(q.container, None, q.protocol) for q in _port(str(p).rsplit(":", 1)[-1], at("expose"))]
    for f in ([d["env_file"]] if isinstance(d.get("env_file"), (str, dict)) else d.get("env_file") or []):
        path = f.get("path") if isinstance(f, dict) else f
        if isinstance(f, dict) and f.get("required") is False and not (directory / str(path)).exists():
            continue
        svc.environment.update(read_env_file(directory / str(path)))
    environment = d.get("environment") or {}
    if isinstance(environment, list):
        for item in map(str, environment):
            k, sep, v = item.partition("=")
            if sep:
                svc.environment[k] = v
            elif k in env:  # `- KEY` alone: from the environment, or left out
                svc.environment[k] = env[k]
    elif isinstance(environment, dict):
        svc.environment.update({str(k): "" if v is None else _scalar(v) for k, v in environment.items()})
    else:
        raise ComposeError(f"{at('environment')}: environment must be a list or a mapping")
    if d.get("command") is not None:
        svc.command = _words(d["command"], at("command"), "command")
    if d.get("entrypoint") is not None:
        svc.entrypoint = _words(d["entrypoint"], at("entrypoint"), "entrypoint")
    for v in _list(d, "volumes", at):
        svc.mounts.append(_mount(v, at("volumes"), directory, volumes))
    deps = d.get("depends_on") or {}
    if isinstance(deps, list):
        svc.depends_on = {str(x): "service_started" for x in deps}
    else:
        for dep, spec in deps.items():
            cond = (spec or {}).get("condition", "service_started")
            if cond not in ("service_started", "service_healthy", "service_completed_successfully"):
                raise ComposeError(f"{_where(source, deps, dep)}: unknown depends_on condition {cond!r}")
            svc.depends_on[str(dep)] = cond
    svc.healthcheck_set = "healthcheck" in d
    if healthcheck := _mapping(d, "healthcheck", at):
        svc.healthcheck = _healthcheck(source, healthcheck)
    svc.restart = str(d.get("restart") or "")
    if svc.restart and not re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", svc.restart):
        raise ComposeError(f"{at('restart')}: invalid restart policy {svc.restart!r}")
    deploy = _mapping(d, "deploy", at)
    _check_keys(source, deploy, {"replicas", "resources", "restart_policy", "labels"}, f"service {name!r} deploy")
    if deploy.get("replicas") is not None:
        svc.replicas = _int(deploy["replicas"], _where(source, deploy, "replicas"), "deploy.replicas")
    svc.limits, svc.requests = _resources(source, deploy.get("resources"))
    svc.working_dir = str(d.get("working_dir") or "")
    svc.user = str(d.get("user") or "")
    if svc.user and not re.fullmatch(r"\d+(:\d+)?", svc.user):
        raise ComposeError(f"{at('user')}: user {svc.user!r}: only numeric UID[:GID] is supported")
    labels = d.get("labels") or {}
    svc.labels = dict(str(x).partition("=")[::2] for x in labels) if isinstance(labels, list) else \
        {str(k): _scalar(v) for k, v in labels.items()}
    for link in _list(d, "links", at):
        target, _, alias = str(link).partition(":")
        svc.depends_on.setdefault(target, "service_started")  # links imply start order, as in Compose
        if alias and alias != target:
            svc.links[_dns_name(alias, source, d, "links", "link alias")] = target
    mode = d.get("network_mode")
    if mode not in (None, "host", "bridge"):
        raise ComposeError(f"{at('network_mode')}: network_mode {mode!r}: only host and bridge are supported")
    svc.host_network = mode == "host"
    svc.profiles = [str(p) for p in _list(d, "profiles", at)]
    if d.get("stop_grace_period") is not None:
        svc.stop_grace_period = _duration(d["stop_grace_period"], at("stop_grace_period"))
    return svc


def _list(d: Mapping[str, Any], key: str, at: Any) -> list[Any]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ComposeError(f"{at(key)}: {key} must be a list")
    return value


def _mapping(d: Mapping[str, Any], key: str, at: Any) -> Mapping[str, Any]:
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ComposeError(f"{at(key)}: {key} must be a mapping")
    return value


def _int(value: Any, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ComposeError(f"{where}: {what} must be a non-negative integer, got {value!r}")
    return int(value)


def _scalar(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _port(p: Any, where: str) -> list[Port]:
    if isinstance(p, dict):
        target = int(p["target"])
        published = p.get("published")
        proto = str(p.get("protocol") or "tcp")
        spec = f"{p['host_ip']}:" if p.get("host_ip") else ""
        spec += f"{published}:{target}/{proto}" if published not in (None, "") else f"{target}/{proto}"
    else:
        spec = str(p)
    try:
        return [Port(q["containerPort"], q.get("hostPort"), q["protocol"], q.get("hostIP", ""))
                for q in published_ports(spec, require_host=False)]
    except GeneratorError as e:
        raise ComposeError(f"{where}: {e}") from None


def _mount(v: Any, where: str, directory: Path, volumes: dict[str, str]) -> Mount:
    if isinstance(v, dict):
        kind, source, target = str(v.get("type") or "volume"), str(v.get("source") or ""), str(v.get("target") or "")
        ro = bool(v.get("read_only"))
    else:
        parts = str(v).split(":")
        if len(parts) == 1:
            kind, source, target, ro = "volume", "", parts[0], False
        else:
            source, target = parts[0], parts[1]
            mode = parts[2] if len(parts) > 2 else "rw"
            if not set(mode.split(",")) <= {"ro", "rw", "z", "Z"}:
                raise ComposeError(f"{where}: invalid volume mode {mode!r} in {v!r}")
            ro = "ro" in mode.split(",")
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    if not target.startswith("/"):
        raise ComposeError(f"{where}: volume {v!r}: the container path must be absolute")
    if kind == "bind":
        return Mount("bind", target, str((directory / os.path.expanduser(source)).resolve()), ro)
    if kind == "tmpfs":
        return Mount("tmpfs", target)
    if kind != "volume":
        raise ComposeError(f"{where}: volume type {kind!r} is not supported (volume, bind, tmpfs)")
    if not source:
        return Mount("anonymous", target)
    if source not in volumes:
        raise ComposeError(f"{where}: service uses undefined volume {source!r}: declare it under the top-level volumes")
    return Mount("volume", target, volumes[source], ro)


def image_healthcheck(doc: Any) -> Healthcheck | None:
    """An image's HEALTHCHECK (Docker's config `Healthcheck`: Test, durations in nanoseconds, zero = default)
    as a service healthcheck; Docker runs it for a service whose file has no healthcheck key."""
    test = doc.get("Test") if isinstance(doc, dict) else None
    if not isinstance(test, list) or not test or test[0] not in ("CMD", "CMD-SHELL"):
        return None  # none, NONE, or inherited ([]): no check
    args = [str(t) for t in test[1:]]
    hc = Healthcheck(["sh", "-c", " ".join(args)] if test[0] == "CMD-SHELL" else args)
    for key, attr in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period")):
        if isinstance(doc.get(key), int) and doc[key] > 0:
            setattr(hc, attr, doc[key] / 1e9)
    if isinstance(doc.get("Retries"), int) and doc["Retries"] > 0:
        hc.retries = doc["Retries"]
    return hc


def _healthcheck(source: str, h: Mapping[str, Any]) -> Healthcheck | None:
    _check_keys(source, h, {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"},
                "healthcheck")
    if h.get("disable"):
        return None
    test = h.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if not isinstance(test, list) or not test:
        raise ComposeError(f"{_where(source, h, 'test')}: healthcheck test must be a string or a list")
    kind, rest = str(test[0]), [str(t) for t in test[1:]]
    if kind == "NONE":
        return None
    if kind == "CMD-SHELL":
        command = ["sh", "-c", " ".join(rest)]
    elif kind == "CMD":
        command = rest
    else:
        raise ComposeError(f"{_where(source, h, 'test')}: healthcheck test must start with CMD, CMD-SHELL or NONE")
    hc = Healthcheck(command)
    for key, attr in (("interval", "interval"), ("timeout", "timeout"), ("start_period", "start_period")):
        if h.get(key) is not None:
            setattr(hc, attr, _duration(h[key], _where(source, h, key)))
    if h.get("retries") is not None:
        hc.retries = _int(h["retries"], _where(source, h, "retries"), "healthcheck.retries")
    return hc
