"""Quantities: exact parsing, unit helpers, the canonical form Kubernetes stores, errors."""
from __future__ import annotations

from fractions import Fraction

import pytest

from pklib.quantity import QuantityError, canonical, parse_quantity, to_bytes, to_millicores


@pytest.mark.parametrize("text, value", [
    ("200m", Fraction(1, 5)),
    ("1.5", Fraction(3, 2)),
    ("64Mi", 64 * 2**20),
    ("1G", 10**9),
    ("1e3", 1000),
    ("1E3", 1000),
    ("1.5e-3", Fraction(3, 2000)),
    ("-2k", -2000),
    ("+3", 3),
    (".5", Fraction(1, 2)),
    ("5.", 5),
    ("100n", Fraction(1, 10**7)),
    ("7u", Fraction(7, 10**6)),
    ("1Ei", 2**60),
    ("2E", 2 * 10**18),
    (3, 3),
    (0.25, Fraction(1, 4)),
])
def test_parse_exact(text: str | int | float, value: Fraction | int) -> None:
    assert parse_quantity(text).value == value


def test_tiny_values_round_up_to_a_nano_not_to_zero() -> None:
    assert parse_quantity("0.1n").value == Fraction(1, 10**9)
    assert parse_quantity("-0.1n").value == -Fraction(1, 10**9)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5 Mi", "1KiB", "1kb", "Mi", "--1", "1e", "0x10", "1e1000",
                                  "1m1", "nan", "1Ki5"])
def test_invalid(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize("bad", [None, True, [1], {"a": 1}, float("inf")])
def test_invalid_types(bad: object) -> None:
    with pytest.raises(QuantityError, match="quantities must match"):
        parse_quantity(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, out", [
    ("0.5", "500m"),
    ("1000m", "1"),
    ("1500", "1500"),
    ("2000", "2k"),
    ("1.5k", "1500"),
    ("1.5Gi", "1536Mi"),
    ("1024Ki", "1Mi"),
    ("1025Ki", "1025Ki"),
    ("512Ki", "512Ki"),
    ("0.5Ki", "512"),
    ("1.5Ki", "1536"),
    ("100Mi", "100Mi"),
    ("1e3", "1e3"),
    ("1.5e3", "1500"),
    ("12e6", "12e6"),
    ("0", "0"),
    ("0Mi", "0"),
    ("-1.5", "-1500m"),
    ("0.000000001", "1n"),
    ("1024Ei", "1024Ei"),
    ("1000E", "1000E"),
])
def test_canonical(text: str, out: str) -> None:
    assert canonical(text) == out


def test_canonical_is_stable() -> None:
    for text in ["0.5", "1.5Gi", "250m", "12e6", "3Ti", "1.0001"]:
        once = canonical(text)
        assert canonical(once) == once
        assert parse_quantity(once).value == parse_quantity(text).value


def test_helpers_round_up() -> None:
    assert to_millicores("250m") == 250
    assert to_millicores("1.5") == 1500
    assert to_millicores("1n") == 1
    assert to_bytes("64Mi") == 64 * 1024 * 1024
    assert to_bytes("1G") == 10**9
    assert to_bytes("1.5") == 2


def test_compare() -> None:
    assert parse_quantity("500m") < parse_quantity("1")
    assert parse_quantity("1Gi") <= parse_quantity("1024Mi")
