"""`pkctl dashboard [--port P] [--address A [--allow-remote]] [--no-open]`: the web dashboard, like
`minikube dashboard`.

It runs `pkube dashboard` (a component: pkctl starts it as a process through the launcher) with this command's
connection flags, prints the one-time login link it answers with, opens it in the browser unless --no-open, and
serves until Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import webbrowser

from pkctl.cluster.procs import python_module
from pklib.flagtypes import int_in_range


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dashboard", help="serve the web dashboard and print its login link",
                       description="Serve the pkube web dashboard on loopback (acting with this kubeconfig's "
                                   "credentials) until Ctrl-C; prints a one-time login link.")
    p.add_argument("--port", type=int_in_range(0, 65535, "port"), default=0,
                   help="local port to serve on (default: any free one)")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow an --address other than loopback (whoever has the login link gets your access)")
    p.add_argument("--no-open", action="store_true", help="do not open the link in a browser")
    p.set_defaults(func=command)


def component_argv(args: argparse.Namespace) -> list[str]:
    argv = python_module("launcher", "dashboard", "--port", str(args.port), "--address", args.address)
    for flag in ("kubeconfig", "context", "server", "token"):
        value = getattr(args, flag, None)
        if value:
            argv += [f"--{flag}", value]
    return argv + (["--allow-remote"] if args.allow_remote else [])


def open_browser(url: str) -> None:
    """A graphical browser when there is a display; without one, Python's webbrowser would start a text browser in
    this terminal, so the link printed above is all there is."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        webbrowser.open(url)
    else:
        print("(no display: open the link in a browser on this machine)", flush=True)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop the dashboard as Ctrl-C does


def command(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _stop)
    proc = subprocess.Popen(component_argv(args), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url:  # it could not start: it said why on stderr (shared with ours)
            return proc.wait() or 1
        print(f"Dashboard (this link logs in once, within 10 minutes): {url}", flush=True)
        print("Serving until Ctrl-C.", flush=True)
        if not args.no_open:
            open_browser(url)
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return 0
    finally:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
