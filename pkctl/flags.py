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
