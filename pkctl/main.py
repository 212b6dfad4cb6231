"""`pkctl`: the kubectl-like command line.

Each command lives in its own module under pkctl/commands/ and exposes
`register(subparsers)`; the COMMANDS table below is the only place that names them.
Only the module of the command being run is imported (a CLI starts as fast as its imports
allow); `pkctl --help`, no command or an unknown one import them all, so the help lists every one.
A command's handler returns an exit code; errors are printed as one clear line.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from pkctl.errors import CommandError

__all__ = ["COMMANDS", "COMMAND_MODULES", "CommandError", "build_parser", "command_of", "main"]

# Every top-level command → the module of pkctl/commands/ whose register() adds it (a module may add several).
# A new command is one row here (in the order `pkctl --help` lists it) and its module.
COMMANDS: dict[str, str] = {
    "apply": "apply",
    "get": "get",
    "describe": "describe",
    "delete": "delete",
    "create": "create",
    "scale": "scale",
    "autoscale": "autoscale",
    "api-resources": "api_resources",
    "cluster": "cluster",
    "image": "image",
    "top": "top",
    "logs": "logs",
    "exec": "exec",
    "attach": "exec",
    "port-forward": "port_forward",
    "rollout": "rollout",
    "cordon": "drain",
    "uncordon": "drain",
    "drain": "drain",
    "run": "run",
    "ps": "ps",
    "stop": "ps",
    "rm": "ps",
    "expose": "expose",
    "compose": "compose",
    "label": "label",
    "annotate": "label",
    "version": "version",
    "patch": "patch",
    "wait": "wait",
    "events": "events",
    "edit": "edit",
    "diff": "diff",
    "config": "config",
    "cluster-info": "config",
    "completion": "completion",
    "explain": "explain",
    "cp": "cp",
    "dashboard": "dashboard",
}
COMMAND_MODULES = list(dict.fromkeys(COMMANDS.values()))
# The global flags that take a value (`--kubeconfig F`): what to skip when looking for the command in argv.
_VALUE_FLAGS = ("--kubeconfig", "--context", "--server", "-s", "--token", "--namespace", "-n")


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


def command_of(argv: list[str]) -> str | None:
    """The command named on this command line (`pkctl -n ns get pods` → get); None when there is none, it is
    unknown, or help is asked for before it."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--" or arg in ("-h", "--help"):
            return None
        elif arg.startswith("-"):
            # `--kubeconfig F`, also abbreviated as argparse allows (`--kube F`); `--kubeconfig=F`, `-nNS` carry it.
            skip = arg in _VALUE_FLAGS or (arg.startswith("--") and "=" not in arg and len(arg) > 2
                                           and any(f.startswith(arg) for f in _VALUE_FLAGS))
        else:
            return arg if arg in COMMANDS else None
    return None


def terminal_width() -> int:
    """What argparse's help is wrapped to: $COLUMNS, else the terminal's width, else 80 (less 2), as
    shutil.get_terminal_size gives argparse."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class Parser(argparse.ArgumentParser):
    """argparse's parser, measuring the terminal itself: its HelpFormatter imports shutil (and zlib, bz2 and
    lzma with it) on the first add_argument only to ask for the width, a few ms of every pkctl run.
    Subcommands' parsers are of this class too (add_subparsers makes them of the parent's class)."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=terminal_width())  # type: ignore[call-arg]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of just `command` (what running that command needs)."""
    parser = Parser(prog="pkctl", description="pkctl controls a pkube cluster.")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES:
        importlib.import_module(f"pkctl.commands.{name}").register(sub)
    _add_global_options_to_subcommands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_of(argv))
    # `pkctl create deployment x --image=busybox -- sleep 3600`: what follows `--` is a command line of its
    # own, handed to the subcommands that take one (they set `takes_command`), never parsed as pkctl flags.
    after_dashes: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, after_dashes = argv[:at], argv[at + 1:]
    args, extra = parser.parse_known_args(argv)
    # `pkctl label pods -l app=web seen=yes`: words after the flags still belong to a command whose positionals
    # may come anywhere (it names the attribute that collects them); anything else unknown is argparse's error.
    collect = getattr(args, "intermixed", None)
    if extra and (collect is None or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra and collect:
        setattr(args, collect, [*getattr(args, collect), *extra])
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
            import traceback
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
