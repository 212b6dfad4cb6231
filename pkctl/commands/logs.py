"""`pkctl logs [-f] [-c C] [--previous] [--tail N] [--since 10s] [--timestamps] POD`: a container's log, through
the API server's pods/log (which the pod's kubelet serves)."""
from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Callable

from pklib import rest
from pklib.errors import ApiError
from pklib.resources import PODS

from ..connect import Connection, call
from ..errors import CommandError

if TYPE_CHECKING:
    from pklib.client import Client

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("logs", help="print the logs of a container in a pod",
                       description="Print the logs of a container in a pod.")
    p.add_argument("pod", metavar="POD", help="the pod (or pod/NAME)")
    p.add_argument("-c", "--container", default="", help="the container (needed when the pod has several)")
    p.add_argument("-f", "--follow", action="store_true", help="keep streaming new lines")
    p.add_argument("-p", "--previous", action="store_true", help="the previous, terminated instance of the container")
    p.add_argument("--tail", type=int, default=-1, help="only the last N lines (-1: all)")
    p.add_argument("--since", default="", help="only lines newer than a duration like 5s, 2m or 3h")
    p.add_argument("--timestamps", action="store_true", help="prefix each line with its RFC3339 timestamp")
    p.set_defaults(func=command)


def since_seconds(text: str) -> int:
    m = _DURATION.match(text)
    if not text or not m or not any(m.groups()):
        raise CommandError(f'invalid argument "{text}" for "--since" flag: use a duration like 30s, 5m or 1h')
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def pod_name(text: str) -> str:
    kind, sep, name = text.partition("/")
    if not sep:
        return text
    if kind not in ("pod", "pods", "po") or not name:
        raise CommandError(f"logs works on pods only, not {text!r}")
    return name


def api_error(status: int, raw: bytes) -> ApiError:
    """The server's Status as an ApiError (run() prints it the way kubectl does)."""
    return ApiError.from_response(status, rest.decode(raw, "application/json"))


def command(args: argparse.Namespace) -> int:
    name = pod_name(args.pod)
    params: dict[str, str] = {}
    if args.container:
        params["container"] = args.container
    if args.follow:
        params["follow"] = "true"
    if args.previous:
        params["previous"] = "true"
    if args.tail >= 0:
        params["tailLines"] = str(args.tail)
    if args.since:
        params["sinceSeconds"] = str(since_seconds(args.since))
    if args.timestamps:
        params["timestamps"] = "true"

    def logs(conn: Connection) -> int:
        # Read as it comes (with -f until interrupted): no time limit.
        request = rest.Request("GET", PODS.path(conn.namespace, name, "log"), params=params, timeout=None)
        for chunk in conn.api.stream(request):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return 0
    return call(args, logs)


async def stream_logs(c: Client, namespace: str, name: str, params: dict[str, str],
                      write: Callable[[bytes], None] | None = None) -> None:
    """Copy a pod's log (pods/log with `params`) to stdout, or to `write`, until the server ends it (for the
    commands that follow several pods at once, on the async client)."""
    import aiohttp  # only the streaming commands load it

    from pklib.errors import ConnectionFailed
    url = c.server + PODS.path(namespace, name, "log")
    try:
        async with c.session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=None)) as r:
            if r.status >= 400:
                rest.result(r.status, r.content_type, await r.read())  # raises the server's Status as ApiError
            async for chunk in r.content.iter_any():
                if write is not None:
                    write(chunk)
                else:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.buffer.flush()
    except aiohttp.ClientConnectionError as e:
        raise ConnectionFailed(f"cannot reach the API server at {c.server}: {e}") from None
