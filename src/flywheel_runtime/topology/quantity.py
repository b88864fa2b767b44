"""Kubernetes resource quantities, parsed exactly.

CPU is held in millicores and memory/storage in bytes, both as ``int``: the
capacity arithmetic (how many runners fit) must never drift the way floats do.
Fractional byte values round up, as the apiserver does.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from math import ceil

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
            "P": Decimal(10**15), "E": Decimal(10**18)}
_RE = re.compile(r"^([+]?[0-9]+(?:\.[0-9]*)?|[+]?\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a quantity")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise ValueError(f"expected a quantity, got {type(value).__name__}")
    m = _RE.match(value.strip())
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from exc
    suffix = m.group(2) or ""
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def parse_cpu(value: object) -> int:
    """CPU quantity (``"500m"``, ``4``, ``"1.5"``) to millicores."""
    return int(ceil(_decimal(value) * 1000))


def parse_bytes(value: object) -> int:
    """Memory or storage quantity (``"219.81Gi"``, ``"1G"``) to bytes, rounded up."""
    return int(ceil(_decimal(value)))


def format_cpu(millicores: int) -> str:
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def format_bytes(n: int) -> str:
    """Shortest exact binary-suffixed form (``"64Gi"``), else plain bytes."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def human_bytes(n: int) -> str:
    """Rounded GiB for tables (``"219.81Gi"``)."""
    return f"{n / 2**30:.2f}Gi"
