"""`pkctl`: the kubectl-like command line.

Each command lives in its own module under pkctl/commands/ and exposes
`register(subparsers)`; the module list below is the only place that names them.
A command's handler returns an exit code; errors are printed as one clear line.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    # Filled as commands land; each module's register() adds its subcommands.
]


class CommandError(Exception):
    """A failure that is the user's to fix: printed as `error: ...`, exit code 1."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pkctl", description="pkctl controls a pkube cluster.")
    parser.add_argument("--kubeconfig", help="path to the kubeconfig file")
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.add_argument("--server", "-s", help="API server address, e.g. http://127.0.0.1:6443")
    parser.add_argument("--token", help="bearer token for the API server")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"pkctl.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
