"""From the global flags to a connected client: kubeconfig, context, --server/--token and the namespace.

The kubeconfig comes from --kubeconfig, else $KUBECONFIG, else <pkube home>/kubeconfig
(written by `pkctl cluster up`), else ~/.kube/config. --server and --token override
what it says; with --server no kubeconfig is needed at all.
"""
from __future__ import annotations

import argparse
import asyncio
import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import yaml

from pklib import kubeconfig, yamlsafe
from pklib.api.wellknown import DEFAULT_NAMESPACE
from pklib.client import Client
from pklib.errors import ApiError, ConnectionFailed

from .errors import CommandError, ServerError, api_error_line, connection_refused_line


@dataclass
class Connection:
    client: Client
    # -n if given, else the context's namespace, else "default".
    namespace: str
    # Whether the user named the namespace with -n (then it must agree with the files' namespaces).
    namespace_given: bool


def _context_namespace(path: Path, context: str | None) -> str | None:
    """The `namespace` of the kubeconfig context in use (pklib.kubeconfig only resolves server and user)."""
    try:
        doc = yamlsafe.load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    name = context or doc.get("current-context")
    for item in doc.get("contexts") or []:
        if isinstance(item, dict) and item.get("name") == name:
            return (item.get("context") or {}).get("namespace") or None
    return None


def connect(args: argparse.Namespace) -> Connection:
    server: str | None = getattr(args, "server", None)
    token: str | None = getattr(args, "token", None)
    path_arg: str | None = getattr(args, "kubeconfig", None)
    context: str | None = getattr(args, "context", None)
    path = Path(path_arg) if path_arg else kubeconfig.default_kubeconfig_path()
    ns_from_context = None
    ssl: Any = None
    if path is not None and (path_arg or context or not server):
        try:
            access = kubeconfig.load(path, context)
        except kubeconfig.KubeconfigError as e:
            raise CommandError(str(e)) from None
        server = server or access.server
        token = token or access.token
        ssl = access.ssl_context()
        ns_from_context = _context_namespace(path, context)
    if not server:
        raise CommandError("no kubeconfig found and no --server given: start a local cluster with "
                           "`pkctl cluster up`, or pass --kubeconfig FILE or --server URL")
    ns = getattr(args, "namespace", None)
    return Connection(Client(server, token, ssl=ssl, user_agent="pkctl"), ns or ns_from_context or DEFAULT_NAMESPACE,
                      bool(ns))


def run(args: argparse.Namespace, command: Callable[[Connection], Awaitable[int]]) -> int:
    """Run an async command with a client, turning transport and server failures into kubectl-like lines."""
    conn = connect(args)

    async def main() -> int:
        try:
            return await command(conn)
        finally:
            await conn.client.close()

    try:
        return asyncio.run(main())
    except ConnectionFailed as e:
        raise ServerError(connection_line(conn.client.server, e)) from None
    except ApiError as e:
        raise ServerError(api_error_line(e)) from None


def connection_line(server: str, e: ConnectionFailed) -> str:
    # The client hides aiohttp's exception behind ConnectionFailed; its context says what happened.
    cause = e.__context__
    if isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(cause, aiohttp.ClientSSLError):
        if cause.os_error.errno == errno.ECONNREFUSED:
            return connection_refused_line(server)
    return f"error: {e}"
