"""`pkctl config view [--minify] [--raw] | get-contexts [NAME] | current-context | use-context NAME` and
`pkctl cluster-info`: kubectl's, on the kubeconfig pkctl uses (--kubeconfig, $KUBECONFIG, the pkube home's,
~/.kube/config)."""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from pklib import kubeconfig
from pklib.resources import SERVICES

from ..connect import Connection, call
from ..errors import CommandError
from ..printers import format_rows, to_json, to_yaml

# What `config view` shows instead of secrets unless --raw (kubectl's words).
OMITTED, REDACTED = "DATA+OMITTED", "REDACTED"
SECRET_DATA = ("certificate-authority-data", "client-certificate-data", "client-key-data")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config", help="show or change the kubeconfig",
                       description="Show the kubeconfig, list its contexts or choose the current one.")
    verbs = p.add_subparsers(dest="config_verb", metavar="VERB")
    view = verbs.add_parser("view", help="print the kubeconfig (secrets hidden unless --raw)")
    view.add_argument("--minify", action="store_true", help="only what the current context uses")
    view.add_argument("--raw", action="store_true", help="show certificates and tokens")
    view.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    view.set_defaults(func=view_command)
    contexts = verbs.add_parser("get-contexts", help="list the contexts")
    contexts.add_argument("names", nargs="*", metavar="NAME")
    contexts.add_argument("-o", "--output", choices=["name"], help="only the names")
    contexts.add_argument("--no-headers", action="store_true", help="print no header line")
    contexts.set_defaults(func=get_contexts)
    current = verbs.add_parser("current-context", help="print the current context's name")
    current.set_defaults(func=current_context)
    use = verbs.add_parser("use-context", help="make a context the current one")
    use.add_argument("name", metavar="NAME")
    use.set_defaults(func=use_context)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    info = sub.add_parser("cluster-info", help="print the addresses of the control plane and cluster services")
    info.add_argument("rest", nargs="*", metavar="dump", help=argparse.SUPPRESS)
    info.set_defaults(func=cluster_info)


def kubeconfig_path(args: argparse.Namespace) -> Path:
    given = getattr(args, "kubeconfig", None)
    path = Path(given) if given else kubeconfig.default_kubeconfig_path()
    if path is None:
        raise CommandError("no kubeconfig found: pass --kubeconfig, set $KUBECONFIG, or start a local cluster "
                           "with `pkctl cluster up`")
    return path


def load(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    path = kubeconfig_path(args)
    try:
        doc = kubeconfig.parse(path.read_text()) or {}
    except OSError as e:
        raise CommandError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    except ValueError as e:
        raise CommandError(f"kubeconfig {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise CommandError(f"kubeconfig {path} is not a kubeconfig (a YAML map)")
    return path, doc


def current_name(args: argparse.Namespace, doc: dict[str, Any]) -> str:
    return str(getattr(args, "context", None) or doc.get("current-context") or "")


def _named(doc: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return [e for e in doc.get(section) or [] if isinstance(e, dict)]


def minified(doc: dict[str, Any], context: str) -> dict[str, Any]:
    """Only the current context, its cluster and its user (kubectl's --minify)."""
    ctx = next((c for c in _named(doc, "contexts") if c.get("name") == context), None)
    if ctx is None:
        raise CommandError(f'cannot locate context {context}' if context else "current-context must exist in "
                           "order to minify")
    inner = ctx.get("context") or {}
    return {**doc, "current-context": context, "contexts": [ctx],
            "clusters": [c for c in _named(doc, "clusters") if c.get("name") == inner.get("cluster")],
            "users": [u for u in _named(doc, "users") if u.get("name") == inner.get("user")]}


def hide_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in _named(out, section):
            body = entry.get(key) or {}
            for field in SECRET_DATA:
                if body.get(field):
                    body[field] = OMITTED
            if body.get("token"):
                body["token"] = REDACTED
    return out


def view_command(args: argparse.Namespace) -> int:
    _, doc = load(args)
    if args.minify:
        doc = minified(doc, current_name(args, doc))
    if not args.raw:
        doc = hide_secrets(doc)
    sys.stdout.write(to_json(doc) if args.output == "json" else to_yaml(doc))
    return 0


def get_contexts(args: argparse.Namespace) -> int:
    _, doc = load(args)
    contexts = _named(doc, "contexts")
    known = {c.get("name") for c in contexts}
    missing = [n for n in args.names if n not in known]
    if args.names:
        contexts = [c for c in contexts if c.get("name") in args.names]
    current = current_name(args, doc)
    if args.output == "name":
        print("\n".join(str(c.get("name")) for c in contexts))
    else:
        rows = [] if args.no_headers else [["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]]
        for c in contexts:
            inner = c.get("context") or {}
            rows.append(["*" if c.get("name") == current else "", str(c.get("name") or ""),
                         str(inner.get("cluster") or ""), str(inner.get("user") or ""),
                         str(inner.get("namespace") or "")])
        if rows:
            print("\n".join(format_rows(rows)))
    if missing:
        raise CommandError(f"context {missing[0]} not found")
    return 0


def current_context(args: argparse.Namespace) -> int:
    _, doc = load(args)
    if not doc.get("current-context"):
        raise CommandError("current-context is not set")
    print(doc["current-context"])
    return 0


def use_context(args: argparse.Namespace) -> int:
    path, doc = load(args)
    if args.name not in {c.get("name") for c in _named(doc, "contexts")}:
        raise CommandError(f'no context exists with the name: "{args.name}"')
    doc["current-context"] = args.name
    kubeconfig.write(path, doc, as_json=path.read_text().lstrip().startswith("{"))  # in the format it had
    print(f'Switched to context "{args.name}".')
    return 0


def cluster_info(args: argparse.Namespace) -> int:
    if args.rest:
        raise CommandError(f"pkctl cluster-info does not support {' '.join(args.rest)!r}; use `pkctl get` and "
                           "`pkctl logs` to look into the cluster")

    def show(conn: Connection) -> int:
        conn.api.request("GET", "/version")  # the server answers before anything is said about it
        print(f"Kubernetes control plane is running at {conn.server}")
        listed = conn.api.list(SERVICES, "kube-system", label_selector="kubernetes.io/cluster-service=true")
        for svc in listed.get("items") or []:
            meta = svc.get("metadata") or {}
            name = (meta.get("labels") or {}).get("kubernetes.io/name") or meta.get("name", "")
            ports = (svc.get("spec") or {}).get("ports") or []
            port = f":{ports[0]['name']}" if ports and ports[0].get("name") else ""
            print(f"{name} is running at {conn.server}/api/v1/namespaces/kube-system/services/"
                  f"{meta.get('name', '')}{port}/proxy")
        print("\nTo further debug and diagnose cluster problems, use 'pkctl cluster status' and 'pkctl get events "
              "-A'.")
        return 0
    return call(args, show)
