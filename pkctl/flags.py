"""Argument types shared by several commands' flags (kept light: every command may import them)."""
from __future__ import annotations

import argparse


def parse_bool(value: str) -> bool:
    v = value.lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r}")


def output_flags(p: argparse.ArgumentParser) -> None:
    """--dry-run and -o of the verbs that create or change objects (create, apply, run, expose), as kubectl's."""
    p.add_argument("--dry-run", choices=["none", "client", "server"], default="none",
                   help="client: only print the object(s), changing nothing; server: also have the server check and "
                        "complete them, storing nothing")
    p.add_argument("-o", "--output", choices=["yaml", "json", "name"], help="print the object(s) in this format")


def dry_run(mode: str) -> tuple[dict[str, str] | None, str]:
    """The request parameters of a --dry-run mode (only the server's has any), and what is added to the verb
    printed (kubectl's)."""
    if mode == "server":
        return {"dryRun": "All"}, " (server dry run)"
    return None, " (dry run)" if mode == "client" else ""
