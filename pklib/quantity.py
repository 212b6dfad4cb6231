"""Kubernetes resource quantities (`200m`, `1.5`, `64Mi`, `1G`, `1e3`) as exact numbers.

Grammar (k8s.io/apimachinery resource.Quantity):
    quantity ::= [+-] number suffix
    number   ::= digits | digits "." digits? | "." digits
    suffix   ::= binarySI (Ki Mi Gi Ti Pi Ei) | decimalSI (n u m "" k M G T P E) | ("e"|"E") [+-] digits

Values are kept as `Fraction`s. Like Kubernetes, a parsed value is rounded up (away from
zero) to whole nano units, so that a tiny non-zero request never becomes 0, and the
canonical form keeps the family of the suffix the user wrote: `1.5Gi` → `1536Mi`,
`0.5` → `500m`, `1000m` → `1`, `1500` → `1500`, `2000` → `2k`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

__all__ = ["Quantity", "QuantityError", "parse_quantity", "canonical", "to_millicores", "to_bytes",
           "QUANTITY_FORMAT_MESSAGE"]

# Kubernetes' own wording, so that errors read the same as kubectl users know them.
QUANTITY_FORMAT_MESSAGE = ("quantities must match the regular expression "
                           "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v: k for k, v in _BINARY.items()}
_RE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?")
# Beyond this the number is no resource anyone has; refusing keeps arithmetic bounded.
_MAX_EXPONENT = 100
_NANO = Fraction(1, 10**9)

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"


class QuantityError(ValueError):
    pass


@dataclass(frozen=True)
class Quantity:
    value: Fraction
    format: str = DECIMAL_SI

    def __str__(self) -> str:
        return _format(self.value, self.format)

    def milli_value(self) -> int:
        """The value in thousandths, rounded up (Kubernetes' MilliValue)."""
        return math.ceil(self.value * 1000)

    def int_value(self) -> int:
        """The value rounded up to a whole number (Kubernetes' Value)."""
        return math.ceil(self.value)

    def __lt__(self, other: "Quantity") -> bool:
        return self.value < other.value

    def __le__(self, other: "Quantity") -> bool:
        return self.value <= other.value


def parse_quantity(text: str | int | float) -> Quantity:
    """Parse a quantity as the API accepts it (JSON numbers too); QuantityError when malformed."""
    if isinstance(text, (str, int, float)) and not isinstance(text, bool):
        return _parse_cached(text)
    raise QuantityError(QUANTITY_FORMAT_MESSAGE)


# Manifests repeat a handful of quantities ("100m", "64Mi"): every write validates them.
@lru_cache(maxsize=1024, typed=True)
def _parse_cached(text: str | int | float) -> Quantity:
    if isinstance(text, int):
        return Quantity(Fraction(text), DECIMAL_SI)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(QUANTITY_FORMAT_MESSAGE)
        text = repr(text)
    m = _RE.fullmatch(text)
    if not m:
        raise QuantityError(QUANTITY_FORMAT_MESSAGE)
    sign, number, exponent, suffix = m.groups()
    value = Fraction(number)
    if exponent is not None:
        power = int(exponent)
        if abs(power) > _MAX_EXPONENT:
            raise QuantityError("quantity exponent is out of range")
        value *= Fraction(10) ** power
        fmt = DECIMAL_EXPONENT
    elif suffix in _BINARY:
        value *= 2 ** _BINARY[suffix]
        fmt = BINARY_SI
    else:
        value *= Fraction(10) ** _DECIMAL[suffix or ""]
        fmt = DECIMAL_SI
    # Round up to nano units, away from zero, as the API server does.
    value = Fraction(math.ceil(value / _NANO)) * _NANO
    return Quantity(-value if sign == "-" else value, fmt)


def canonical(text: str | int | float) -> str:
    """The canonical string of a quantity (what the API server stores)."""
    return str(parse_quantity(text))


def to_millicores(text: str | int | float) -> int:
    """CPU quantity in millicores, rounded up: `250m` → 250, `1.5` → 1500."""
    return parse_quantity(text).milli_value()


def to_bytes(text: str | int | float) -> int:
    """Memory/storage quantity in bytes, rounded up: `64Mi` → 67108864, `1G` → 10**9."""
    return parse_quantity(text).int_value()


def _format(value: Fraction, fmt: str) -> str:
    if value == 0:
        return "0"
    if fmt == BINARY_SI and abs(value) >= 1024 and value.denominator == 1:
        n, power = value.numerator, 0
        while power < 60 and n % 1024 == 0:
            n //= 1024
            power += 10
        return f"{n}{_BINARY_SUFFIX[power]}" if power else str(n)
    # Decimal: an integer mantissa with an exponent that is a multiple of 3, as large as possible.
    exponent = -9
    mantissa = value / Fraction(10) ** exponent  # an integer: values are whole nanos
    assert mantissa.denominator == 1
    n = mantissa.numerator
    while exponent < 18 and n % 1000 == 0:
        n //= 1000
        exponent += 3
    if fmt == DECIMAL_EXPONENT:
        return f"{n}e{exponent}" if exponent else str(n)
    return f"{n}{_DECIMAL_SUFFIX[exponent]}"
