"""`pkctl exec [-i] [-t] POD [-c C] -- COMMAND [ARGS...]`: run a command in a container through the API server's
pods/exec WebSocket (channel protocol v5.channel.k8s.io); the command's exit code becomes pkctl's."""
from __future__ import annotations

import argparse
import json
import sys

import aiohttp

from pklib.errors import ConnectionFailed
from pklib.resources import lookup

from ..connect import Connection, run
from ..errors import CommandError
from .logs import api_error, pod_name

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("exec", help="run a command in a container: exec POD -- COMMAND [ARGS...]",
                       description="Run a command in a container; its exit code is pkctl's exit code.")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", default="", help="the container (needed when the pod has several)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass pkctl's stdin to the command")
    p.add_argument("-t", "--tty", action="store_true", help="(not offered: the command runs without a terminal)")
    p.set_defaults(func=command, takes_command=True)  # the command line follows `--` (pkctl.main)


def exit_code(status: dict) -> int:
    """0 for Success; the exit code for NonZeroExitCode; otherwise a CommandError with the server's message."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause.get("message", "1"))
    raise CommandError(status.get("message") or "exec failed")


def command(args: argparse.Namespace) -> int:
    argv = args.after_dashes
    if not argv:
        raise CommandError("you must specify at least one command for the container: pkctl exec POD -- COMMAND")
    if args.tty:
        print("Unable to use a TTY - this kubelet offers none; running without one", file=sys.stderr)
    name = pod_name(args.pod)
    stdin = sys.stdin.buffer.read() if args.stdin else b""
    params = [("command", c) for c in argv] + [("stdout", "true"), ("stderr", "true"),
                                               ("stdin", "true" if args.stdin else "false")]
    if args.container:
        params.append(("container", args.container))
    pods = lookup("pods")
    assert pods is not None

    async def run_exec(conn: Connection) -> int:
        c = conn.client
        url = c.server + pods.path(conn.namespace, name, "exec")
        status: dict = {}
        try:
            async with c.session.ws_connect(url, params=params, protocols=PROTOCOLS) as ws:
                if args.stdin:
                    await ws.send_bytes(bytes([STDIN]) + stdin)
                    if ws.protocol == PROTOCOLS[0]:
                        await ws.send_bytes(bytes([CLOSE, STDIN]))
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                        continue
                    channel, payload = msg.data[0], msg.data[1:]
                    if channel == STDOUT:
                        sys.stdout.buffer.write(payload)
                        sys.stdout.buffer.flush()
                    elif channel == STDERR:
                        sys.stderr.buffer.write(payload)
                        sys.stderr.buffer.flush()
                    elif channel == ERROR:
                        status = json.loads(payload)
        except aiohttp.WSServerHandshakeError as e:
            # the server answered with a Status instead of upgrading (pod not found, no container, ...)
            async with c.session.get(url, params=params) as r:
                raise api_error(r.status if r.status >= 400 else e.status, await r.read()) from None
        except aiohttp.ClientConnectionError as e:
            raise ConnectionFailed(f"cannot reach the API server at {c.server}: {e}") from None
        if not status:
            raise CommandError("the exec stream ended without an exit status")
        return exit_code(status)
    return run(args, run_exec)
