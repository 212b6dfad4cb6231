"""`pkctl`: the kubectl-like command line.

Each command lives in its own module under pkctl/commands/ and exposes
`register(subparsers)`; the module list below is the only place that names them.
A command's handler returns an exit code; errors are printed as one clear line.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from pkctl.errors import CommandError

__all__ = ["COMMAND_MODULES", "CommandError", "build_parser", "main"]

COMMAND_MODULES = [
    # Filled as commands land; each module's register() adds its subcommands.
    "apply", "get", "describe", "delete", "create", "scale", "api_resources",
    "cluster",
    "image",
    "logs", "exec", "port_forward",
    "rollout",
    "run", "expose", "compose",
]


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Connection flags; on subcommands they default to SUPPRESS so `pkctl get po --kubeconfig F` also works."""
    default = argparse.SUPPRESS if suppress else None
    options = [
        (("--kubeconfig",), "path to the kubeconfig file"),
        (("--context",), "kubeconfig context to use"),
        (("--server", "-s"), "API server address, e.g. http://127.0.0.1:6443"),
        (("--token",), "bearer token for the API server"),
        (("--namespace", "-n"), "namespace of the request (default: the context's, else default)"),
    ]
    for flags, help_text in options:
        # Subcommands that define a flag of their own (e.g. -n meaning something else) keep it.
        if not any(f in parser._option_string_actions for f in flags):
            parser.add_argument(*flags, default=default, help=help_text)


def _add_global_options_to_subcommands(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _global_options(sub, suppress=True)
                _add_global_options_to_subcommands(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pkctl", description="pkctl controls a pkube cluster.")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"pkctl.commands.{name}").register(sub)
    _add_global_options_to_subcommands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `pkctl create deployment x --image=busybox -- sleep 3600`: what follows `--` is a command line of its
    # own, handed to the subcommands that take one (they set `takes_command`), never parsed as pkctl flags.
    after_dashes: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, after_dashes = argv[:at], argv[at + 1:]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if after_dashes and not getattr(args, "takes_command", False):
        parser.error(f"unexpected arguments after --: {' '.join(after_dashes)}")
    args.after_dashes = after_dashes
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        _print_error(e.line())
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `pkctl get pods | head`: the reader left; nothing more to say.
        sys.stderr.close()
        return 1
    except Exception as e:  # noqa: BLE001 - the last line of defence against tracebacks for users
        if os.environ.get("PKCTL_DEBUG"):
            traceback.print_exc()
        _print_error(f"error: unexpected failure ({type(e).__name__}: {e}); this is a bug in pkctl, please report "
                     "it with the command you ran (PKCTL_DEBUG=1 shows the traceback)")
        return 1


def _print_error(line: str) -> None:
    sys.stdout.flush()
    print(line, file=sys.stderr)


if __name__ == "__main__":
    # Run the canonical module, so that `python -m pkctl.main` and the commands share one CommandError class.
    from pkctl.main import main as _main
    sys.exit(_main())
