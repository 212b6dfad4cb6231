"""`pkctl version [--client] [-o json|yaml]`: pkctl's version and the API server's (its /version), as kubectl
prints them."""
from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from typing import Any

from pklib.errors import ApiError, ConnectionFailed

from ..connect import Connection, call
from ..errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("version", help="print the client and server versions",
                       description="Print pkctl's version and, unless --client, the API server's.")
    p.add_argument("--client", action="store_true", help="only the client version (no server needed)")
    p.add_argument("-o", "--output", choices=("json", "yaml"), help="print the versions as a document")
    p.set_defaults(func=command)


def client_version() -> dict[str, Any]:
    try:
        version = metadata.version("pkube")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"gitVersion": f"pkube-v{version}", "platform": f"{sys.platform}/{platform.machine()}",
            "pythonVersion": platform.python_version()}


def command(args: argparse.Namespace) -> int:
    doc: dict[str, Any] = {"clientVersion": client_version()}
    error: str | None = None
    if not args.client:
        def server(conn: Connection) -> int:
            doc["serverVersion"] = conn.api.request("GET", "/version")
            return 0
        try:
            call(args, server)
        except CommandError as e:  # kubectl prints the client's version anyway, then the error
            error = e.line()
        except (ApiError, ConnectionFailed) as e:
            error = f"error: {e}"
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    elif args.output == "yaml":
        from ..yamlprint import to_yaml
        sys.stdout.write(to_yaml(doc))
    else:
        print(f"Client Version: {doc['clientVersion']['gitVersion']}")
        if "serverVersion" in doc:
            print(f"Server Version: {doc['serverVersion'].get('gitVersion', '')}")
    if error is not None:
        print(error, file=sys.stderr)
        return 1
    return 0
