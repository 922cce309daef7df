"""Sizes and transfer rates as people write them: ``512MiB``, ``2GB``, ``20MiB/s``.

Binary units (KiB, MiB, GiB, TiB: powers of 1024) and decimal units (kB, MB,
GB, TB: powers of 1000) are both accepted, with an optional space between
number and unit; ``B`` alone is bytes. A bare number is refused: whether
``20`` means bytes or megabytes is exactly the ambiguity the unit removes.
"""

from __future__ import annotations

import math
import re

from pitr.errors import InvalidArgument

__all__ = ["UNITS", "format_rate", "parse_rate", "parse_size"]

UNITS: dict[str, int] = {
    "B": 1,
    "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")
_EXAMPLES = "like 512KiB, 20MiB, 1.5GiB or 100MB"


def parse_size(text: str, *, what: str = "size") -> int:
    """`text` as a whole number of bytes (rounded down); `InvalidArgument` naming `what` otherwise."""
    match = _SIZE.match(text)
    unit = UNITS.get(match.group(2)) if match else None
    if match is None or unit is None:
        raise InvalidArgument(f"{what} {text!r}: give a size with a unit, {_EXAMPLES} "
                              "(KiB/MiB/GiB are powers of 1024, kB/MB/GB powers of 1000)")
    value = float(match.group(1)) * unit
    if not math.isfinite(value) or value >= 2**63:
        raise InvalidArgument(f"{what} {text!r} is too large")
    return int(value)


def parse_rate(text: str, *, what: str = "rate") -> int:
    """A transfer rate such as ``20MiB/s`` (``/s`` may be left out) in bytes per second, at least 1."""
    body = text.strip()
    body = body[:-2] if body.endswith("/s") else body
    rate = parse_size(body, what=what) if body else -1
    if rate < 1:
        raise InvalidArgument(f"{what} {text!r}: give a positive rate in bytes per second with a unit, "
                              "like 512KiB/s, 20MiB/s or 100MB/s")
    return rate


def format_rate(bytes_per_second: float) -> str:
    """A rate for people, in binary units (``20.0 MiB/s``)."""
    value = float(bytes_per_second)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}/s" if unit == "B" else f"{value:.1f} {unit}/s"
        value /= 1024
    raise AssertionError("unreachable")
