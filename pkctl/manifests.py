"""Reading the objects behind `-f FILE|DIR|URL|-` (multi-document YAML, JSON, List kinds, `-R`).

Every source is parsed before anything is sent to the server: a typo in the third
file must not leave the first two applied and the rest not (nothing half-written).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from pklib.resources import Resource, for_kind

from .errors import CommandError, as_command_error

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "STDIN"
URL_SCHEMES = ("http://", "https://")
# Seconds to wait for a manifest given as -f URL.
URL_TIMEOUT = 30.0
KUSTOMIZE = "kustomize is not supported by pkctl; use `kubectl kustomize {dir} | pkctl {command} -f -`"


class _NoKustomize(argparse.Action):
    """-k DIR: said to be unsupported at once, with the way around it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        command = parser.prog.split()[-1]
        print(f"error: {KUSTOMIZE.format(dir=values, command=command)}", file=sys.stderr)
        sys.exit(1)


class ManifestError(Exception):
    """A source that cannot be read or parsed; the message is what the user sees after `error: `."""


def add_file_flags(p: argparse.ArgumentParser, required: bool) -> None:
    """The -f/-R flags of every command that reads objects from files."""
    p.add_argument("-f", "--filename", action="append", default=[], required=required, metavar="FILE",
                   help="file, directory, http(s) URL or - (stdin) holding the objects; may be repeated")
    p.add_argument("-R", "--recursive", action="store_true", help="descend into directories given with -f")
    p.add_argument("-k", "--kustomize", action=_NoKustomize, metavar="DIR",
                   help="not supported: use `kubectl kustomize DIR | pkctl ... -f -`")


class Manifest(NamedTuple):
    source: str  # the file name as the user gave it, or STDIN
    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str:
        return str((self.obj.get("metadata") or {}).get("namespace") or "")


def expand_paths(filenames: list[str], recursive: bool) -> list[str]:
    """The files behind -f arguments: directories give their manifest files (descending with -R)."""
    out: list[str] = []
    for name in filenames:
        if name == "-" or name.startswith(URL_SCHEMES):
            out.append(name)
            continue
        p = Path(name)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            out.extend(str(f) for f in sorted(p.glob(pattern)) if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
        elif p.exists():
            out.append(name)
        else:
            raise ManifestError(f'the path "{name}" does not exist')
    return out


def read_all(filenames: list[str], recursive: bool = False, stdin: TextIO | None = None) -> list[Manifest]:
    """Every object of every source, in order; raises ManifestError on the first bad source."""
    if not filenames:
        raise ManifestError("must specify one of -f and -k")
    manifests: list[Manifest] = []
    for path in expand_paths(filenames, recursive):
        if path == "-":
            text, source = (stdin or sys.stdin).read(), STDIN
        elif path.startswith(URL_SCHEMES):
            text, source = read_url(path), path
        else:
            try:
                text, source = Path(path).read_text(), path
            except (OSError, UnicodeDecodeError) as e:
                raise ManifestError(f"error reading {path}: {getattr(e, 'strerror', None) or e}") from None
        manifests.extend(parse(text, source))
    return manifests


def read_url(url: str) -> str:
    """The manifest at an http(s) URL (kubectl's -f URL), worded as kubectl words a failure."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as resp:
            return str(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        raise ManifestError(f'unable to read URL "{url}", server reported {e.code} {e.reason}, '
                            f"status code={e.code}") from None
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as e:
        raise ManifestError(f'unable to read URL "{url}": {getattr(e, "reason", None) or e}') from None


def parse(text: str, source: str) -> list[Manifest]:
    """The objects of one source; empty documents are skipped, List kinds are flattened."""
    docs: list[Any]
    if source.endswith(".json") or text.lstrip().startswith("{"):
        try:
            docs = [json.loads(text)] if text.strip() else []
        except json.JSONDecodeError as e:
            raise ManifestError(f"error parsing {source}: invalid JSON: line {e.lineno}: {e.msg}") from None
        except RecursionError:
            raise ManifestError(f"error parsing {source}: invalid JSON: nested too deeply") from None
        except ValueError as e:  # an integer with more digits than Python converts
            raise ManifestError(f"error parsing {source}: invalid JSON: {e}") from None
    else:
        import yaml  # only for YAML: `delete pod x` and JSON manifests start without it
        from pklib import yamlsafe
        try:
            docs = yamlsafe.load_all(text)  # aliases bounded: a "billion laughs" file is an error
        except yaml.MarkedYAMLError as e:
            line = f"line {e.problem_mark.line + 1}: " if e.problem_mark else ""
            raise ManifestError(f"error parsing {source}: yaml: {line}{e.problem}") from None
        except yaml.YAMLError as e:
            raise ManifestError(f"error parsing {source}: yaml: {e}") from None
    out: list[Manifest] = []
    for doc in docs:
        if doc is None:
            continue
        out.extend(_flatten(doc, source))
    return out


def _flatten(doc: Any, source: str) -> list[Manifest]:
    if not isinstance(doc, dict):
        raise ManifestError(f'error validating "{source}": error validating data: '
                            f"expected an object, got {type(doc).__name__}")
    missing = [f for f in ("apiVersion", "kind") if not doc.get(f)]
    if missing:
        raise ManifestError(f'error validating "{source}": error validating data: '
                            f"[{', '.join(f'{f} not set' for f in missing)}]")
    kind = str(doc["kind"])
    if kind.endswith("List") and isinstance(doc.get("items"), list):
        out = []
        # Items of a typed list (PodList) may leave out their own apiVersion/kind.
        defaults = {} if kind == "List" else {"apiVersion": doc["apiVersion"], "kind": kind[:-len("List")]}
        for item in doc["items"]:
            if isinstance(item, dict):
                item = {**defaults, **item}
            out.extend(_flatten(item, source))
        return out
    if not isinstance(doc.get("metadata") or {}, dict):
        raise ManifestError(f'error validating "{source}": error validating data: metadata must be an object')
    return [Manifest(source, doc)]


class Placed(NamedTuple):
    """A manifest resolved to its API resource and the namespace it goes to."""
    manifest: Manifest
    res: Resource
    obj: dict[str, Any]  # a copy, with metadata.namespace filled in for namespaced kinds
    namespace: str | None

    @property
    def name(self) -> str:
        return self.manifest.name


def place(m: Manifest, namespace: str, namespace_given: bool) -> Placed:
    """Resolve the kind and the namespace: the object's own, else -n / the context's (`namespace`).

    With -n given, an object naming another namespace is an error, as kubectl makes it.
    """
    api_version, kind = str(m.obj.get("apiVersion")), str(m.obj.get("kind"))
    res = for_kind(api_version, kind)
    if res is None:
        raise ManifestError(f'resource mapping not found for name: "{m.name}" namespace: "{m.namespace}" '
                            f'from "{m.source}": no matches for kind "{kind}" in version "{api_version}"')
    obj = copy.deepcopy(m.obj)
    meta = obj.setdefault("metadata", {})
    ns: str | None = None
    if res.namespaced:
        own = meta.get("namespace")
        if own and namespace_given and own != namespace:
            raise ManifestError(f'the namespace from the provided object "{own}" does not match the namespace '
                                f'"{namespace}". You must pass \'--namespace={own}\' to perform this operation.')
        ns = own or namespace
        meta["namespace"] = ns
    return Placed(m, res, obj, ns)


def read_files(filenames: list[str], recursive: bool, none_given: str = "") -> list[Manifest]:
    """The objects behind -f/-R, for a command: an unreadable source is a CommandError, and so is finding no
    object at all when `none_given` says what to tell the user."""
    with as_command_error(ManifestError):
        manifests = read_all(filenames, recursive)
    if none_given and not manifests:
        raise CommandError(none_given)
    return manifests


def place_or_report(m: Manifest, namespace: str, namespace_given: bool) -> Placed | None:
    """place(), or None once the reason is printed as `error: ...`: the other objects still go ahead (and the
    command ends failed), as kubectl does."""
    try:
        return place(m, namespace, namespace_given)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
