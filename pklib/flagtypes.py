"""argparse `type=` functions shared by the components and pkctl (a bad value is argparse's one-line error)."""
from __future__ import annotations

import argparse
from typing import Callable, TypeVar


def int_in_range(low: int, high: int, what: str, show_range: bool = False) -> Callable[[str], int]:
    """An integer from `low` to `high`; anything else is "... is not a <what>" (with the range if `show_range`)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        if not low <= value <= high:
            hint = f" ({low}-{high})" if show_range else ""
            raise argparse.ArgumentTypeError(f"{value} is not a {what}{hint}")
        return value
    return parse


N = TypeVar("N", int, float)


def non_negative(parse: Callable[[str], N], *errors: type[Exception]) -> Callable[[str], N]:
    """`parse(text)` (a duration, a quantity...) that must not be negative; its `errors` become argparse's."""
    def convert(text: str) -> N:
        try:
            value = parse(text)
        except errors as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} is negative")
        return value
    return convert
