"""resource.Quantity: parse, compare and canonicalise like k8s.io/apimachinery/pkg/api/resource.

The real server stores quantities in canonical form ("1000Mi" stays, "1.5Gi" becomes "1536Mi",
"1000" becomes "1k"), so what kubectl shows after a round trip depends on it.
"""

import functools
import re
from fractions import Fraction

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_RE = re.compile(r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")

MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


class QuantityError(ValueError):
    pass


def parse(text):
    """Returns (Fraction value, format) with format 'BinarySI', 'DecimalSI' or 'DecimalExponent'."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise QuantityError(MSG)
    return _parse(text)


# Pure functions of a string, called several times per claim or volume written (defaulting,
# validation, the controllers' comparisons) with the same few values: cached. Fractions are
# immutable; errors are not cached (lru_cache keeps only results).
@functools.lru_cache(maxsize=4096)
def _parse(text):
    m = _RE.match(text.strip())
    if not m or text != text.strip():
        raise QuantityError(MSG)
    number, suffix = m.group(1), m.group(2) or ""
    value = Fraction(number)
    if suffix in _BINARY:
        return value * (1024 ** _BINARY[suffix]), "BinarySI"
    if suffix in _DECIMAL:
        return value * Fraction(10) ** _DECIMAL[suffix], "DecimalSI"
    return value * Fraction(10) ** int(suffix[1:]), "DecimalExponent"


def value(text):
    return parse(text)[0]


def _decimal(v, fmt):
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v == 0:
        return "0"
    # Largest exponent (multiple of 3) that keeps the mantissa an integer.
    for exp in (18, 15, 12, 9, 6, 3, 0, -3, -6, -9):
        mant = v / Fraction(10) ** exp
        if mant.denominator == 1:
            if fmt == "DecimalExponent":
                return f"{sign}{mant.numerator}" + (f"e{exp}" if exp else "")
            suffix = {v2: k for k, v2 in _DECIMAL.items()}[exp]
            return f"{sign}{mant.numerator}{suffix}"
    # Sub-nano precision is rounded up to 1n, as the real Quantity does.
    mant = -(-v * 10 ** 9 // 1)
    return f"{sign}{mant}n"


def canonical(text):
    if isinstance(text, str):
        return _canonical(text)
    return _canonical_uncached(text)


@functools.lru_cache(maxsize=4096)
def _canonical(text):
    return _canonical_uncached(text)


def _canonical_uncached(text):
    v, fmt = parse(text)
    if fmt == "BinarySI" and v.denominator == 1 and abs(v) >= 1024:
        n = abs(v.numerator)
        for suffix, power in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
            unit = 1024 ** power
            if n % unit == 0:
                return ("-" if v < 0 else "") + f"{n // unit}{suffix}"
        return str(v.numerator)
    if fmt == "BinarySI":
        fmt = "DecimalSI"
    return _decimal(v, fmt)


def human(text):
    """Canonical form, or the original text if it does not parse."""
    try:
        return canonical(text)
    except QuantityError:
        return str(text)
