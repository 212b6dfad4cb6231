"""`pkctl exec [-i] [-t] POD [-c C] -- COMMAND [ARGS...]`: run a command in a container through the API server's
pods/exec WebSocket (channel protocol v5.channel.k8s.io); the command's exit code becomes pkctl's.
`pkctl attach [-i] [-t] POD [-c C]`: the same over pods/attach, to the container's own main process.

Output is printed as it arrives and stdin forwarded as it is read. With -t on a terminal, pkctl's terminal is put
in raw mode (the container's terminal does echo and line editing) and its size is sent at start and on SIGWINCH."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
import termios
import tty
from typing import AsyncIterator, Callable, Iterator, TextIO

import aiohttp

from pklib.client import connection_failed
from pklib.resources import PODS

from ..connect import Connection, run
from ..errors import CommandError
from .logs import api_error, pod_name

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
CHUNK = 65536


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("exec", help="run a command in a container: exec POD -- COMMAND [ARGS...]",
                       description="Run a command in a container; its exit code is pkctl's exit code.")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", default="", help="the container (needed when the pod has several)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass pkctl's stdin to the command")
    p.add_argument("-t", "--tty", action="store_true", help="run the command on a terminal (with -i from a terminal: interactive)")
    p.set_defaults(func=command, takes_command=True)  # the command line follows `--` (pkctl.main)
    p = sub.add_parser("attach", help="attach to the running main process of a container: attach POD [-c C] [-i] [-t]",
                       description="Show a container's output as it writes it and, with -i, send it pkctl's stdin "
                                   "(the container needs `stdin: true`). Ending pkctl only detaches.")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", default="", help="the container (needed when the pod has several)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass pkctl's stdin to the container")
    p.add_argument("-t", "--tty", action="store_true", help="the container has a terminal (with -i from a terminal: interactive)")
    p.set_defaults(func=attach_command)


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
    return _stream(args, "exec", argv)


def attach_command(args: argparse.Namespace) -> int:
    return _stream(args, "attach", [])


def _stream(args: argparse.Namespace, subresource: str, argv: list[str]) -> int:
    """exec (argv run in the container) or attach (its own stdio): output printed, stdin fed, the exit code."""
    name = pod_name(args.pod)
    terminal = args.tty and args.stdin and os.isatty(0)
    if args.tty and not terminal:  # kubectl's warnings; the command then runs without a terminal
        print("Unable to use a TTY - " + ("input is not a terminal or the right kind of file" if args.stdin else
                                          "input is not connected (use -i)"), file=sys.stderr)
    params = exec_params(argv, args.container, stdin=args.stdin, tty=terminal)

    async def run_exec(conn: Connection) -> int:
        async with exec_socket(conn, conn.namespace, name, params, subresource) as ws:
            feeder = asyncio.create_task(_feed_stdin(ws)) if args.stdin else None
            if terminal:
                _watch_size(ws)
            with _raw_terminal(terminal):
                status = await _print_output(ws, _write_to(sys.stdout), _write_to(sys.stderr))
            if feeder is not None:
                feeder.cancel()
        return exit_code(status)
    return run(args, run_exec)


def exec_params(argv: list[str], container: str = "", stdin: bool = False, tty: bool = False) -> list[tuple[str, str]]:
    """The query of a pods/exec request (stderr comes merged into stdout on a terminal, as kubectl asks)."""
    params = [("command", c) for c in argv] + [("stdout", "true"), ("stderr", "false" if tty else "true"),
                                               ("stdin", "true" if stdin else "false"),
                                               ("tty", "true" if tty else "false")]
    if container:
        params.append(("container", container))
    return params


@contextlib.asynccontextmanager
async def exec_socket(conn: Connection, namespace: str, name: str,
                      params: list[tuple[str, str]],
                      subresource: str = "exec") -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """The pods/exec (or pods/attach) WebSocket; a refusal (pod not found, no such container...) raised as the
    server's Status."""
    c = conn.client
    url = c.server + PODS.path(namespace, name, subresource)
    try:
        async with c.session.ws_connect(url, params=params, protocols=PROTOCOLS) as ws:
            yield ws
    except aiohttp.WSServerHandshakeError as e:
        # the server answered with a Status instead of upgrading (pod not found, no container, ...)
        async with c.session.get(url, params=params) as r:
            raise api_error(r.status if r.status >= 400 else e.status, await r.read()) from None
    except aiohttp.ClientConnectionError as e:
        raise connection_failed(c.server, e) from None


async def run_collecting(conn: Connection, namespace: str, name: str, argv: list[str], container: str = "",
                         stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    """Run a command in a container to its end, with `stdin` as its input: (exit code, stdout, stderr)."""
    out, err = bytearray(), bytearray()
    async with exec_socket(conn, namespace, name, exec_params(argv, container, stdin=stdin is not None)) as ws:
        if stdin is not None:
            for at in range(0, len(stdin), CHUNK):
                await ws.send_bytes(bytes([STDIN]) + stdin[at:at + CHUNK])
            if ws.protocol == PROTOCOLS[0]:
                await ws.send_bytes(bytes([CLOSE, STDIN]))
        status = await _print_output(ws, out.extend, err.extend)
    return exit_code(status), bytes(out), bytes(err)


def _write_to(stream: TextIO) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.buffer.write(data)
        stream.buffer.flush()
    return write


async def _print_output(ws: aiohttp.ClientWebSocketResponse, stdout: Callable[[bytes], None],
                        stderr: Callable[[bytes], None]) -> dict:
    """Output handed on as it arrives, until the server closes the socket; returns the status frame."""
    status: dict = {}
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
            continue
        channel, payload = msg.data[0], msg.data[1:]
        if channel == STDOUT:
            stdout(payload)
        elif channel == STDERR:
            stderr(payload)
        elif channel == ERROR:
            status = json.loads(payload)
    if not status:
        raise CommandError("the exec stream ended without an exit status")
    return status


async def _feed_stdin(ws: aiohttp.ClientWebSocketResponse) -> None:
    """pkctl's stdin to the command as it is read; then the v5 close-stdin signal (v4 has none)."""
    mode = os.fstat(0).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)):
        # a file or /dev/null: the event loop cannot wait on those, and all of it is there already
        await ws.send_bytes(bytes([STDIN]) + sys.stdin.buffer.read())
    else:
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                           os.fdopen(os.dup(0), "rb", 0))
        while chunk := await reader.read(CHUNK):
            await ws.send_bytes(bytes([STDIN]) + chunk)
    if ws.protocol == PROTOCOLS[0]:
        await ws.send_bytes(bytes([CLOSE, STDIN]))


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    """Keystrokes go to the container's terminal unprocessed; the user's terminal is restored whatever happens."""
    if not enabled:
        yield
        return
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _watch_size(ws: aiohttp.ClientWebSocketResponse) -> None:
    def send() -> None:
        size = os.get_terminal_size(0)
        frame = json.dumps({"Width": size.columns, "Height": size.lines}).encode()
        asyncio.ensure_future(ws.send_bytes(bytes([RESIZE]) + frame))
    send()
    asyncio.get_running_loop().add_signal_handler(signal.SIGWINCH, send)
