"""From the global flags to a connected client: kubeconfig, context, --server/--token and the namespace.

The kubeconfig comes from --kubeconfig, else $KUBECONFIG, else <pkube home>/kubeconfig
(written by `pkctl cluster up`), else ~/.kube/config. --server and --token override
what it says; with --server no kubeconfig is needed at all.

A command gets a Connection with two clients, each made on first use: `api`, blocking
(pklib.syncclient: one-shot requests, no event loop, nothing of aiohttp imported), and
`client`, asynchronous (pklib.client on aiohttp: watches and streams). A command written as a
plain function runs with `call`; one written as a coroutine with `run`; a plain command that
needs a watch in the end (get -w, delete --wait) hands a coroutine to `Connection.run_async`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from pklib import kubeconfig
from pklib.api.wellknown import DEFAULT_NAMESPACE
from pklib.errors import ApiError, ConnectionFailed
from pklib.syncclient import SyncClient

from .errors import CommandError, ServerError, api_error_line, connection_refused_line

if TYPE_CHECKING:
    from pklib.client import Client

T = TypeVar("T")


class Connection:
    """(A plain class, not a dataclass: see pklib/rest.py on what pkctl imports.)"""

    def __init__(self, server: str, token: str | None, ssl: Any, namespace: str, namespace_given: bool) -> None:
        self.server, self.token, self.ssl = server, token, ssl
        # -n if given, else the context's namespace, else "default".
        self.namespace = namespace
        # Whether the user named the namespace with -n (then it must agree with the files' namespaces).
        self.namespace_given = namespace_given
        self._api: SyncClient | None = None
        self._client: "Client | None" = None

    @property
    def api(self) -> SyncClient:
        """The blocking client, for one-shot requests."""
        if self._api is None:
            self._api = SyncClient(self.server, self.token, ssl=self.ssl, user_agent="pkctl")
        return self._api

    @property
    def client(self) -> "Client":
        """The asyncio client (aiohttp), for watches and streams; use it inside `run` / `run_async`."""
        if self._client is None:
            from pklib.client import Client
            self._client = Client(self.server, self.token, ssl=self.ssl, user_agent="pkctl")
        return self._client

    def run_async(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine (one using `client`) to its end, closing the async client after it."""
        import asyncio

        async def main() -> T:
            try:
                return await command()
            finally:
                if self._client is not None:
                    await self._client.close()
                    self._client = None
        return asyncio.run(main())

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


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
        ns_from_context = access.namespace
    if not server:
        raise CommandError("no kubeconfig found and no --server given: start a local cluster with "
                           "`pkctl cluster up`, or pass --kubeconfig FILE or --server URL")
    ns = getattr(args, "namespace", None)
    return Connection(server.rstrip("/"), token, ssl, ns or ns_from_context or DEFAULT_NAMESPACE, bool(ns))


def call(args: argparse.Namespace, command: Callable[[Connection], int]) -> int:
    """Run a command with a connection, turning transport and server failures into kubectl-like lines."""
    conn = connect(args)
    try:
        return command(conn)
    except ConnectionFailed as e:
        raise ServerError(connection_line(conn.server, e)) from None
    except ApiError as e:
        raise ServerError(api_error_line(e)) from None
    finally:
        conn.close()


def run(args: argparse.Namespace, command: Callable[[Connection], Awaitable[int]]) -> int:
    """Run an async command (as `call` runs a plain one)."""
    return call(args, lambda conn: conn.run_async(lambda: command(conn)))


def connection_line(server: str, e: ConnectionFailed) -> str:
    return connection_refused_line(server) if e.refused else f"error: {e}"
