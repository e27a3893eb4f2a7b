"""Command-line value parsing shared by ctop's management commands."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """`30s`, `5m`, `1h`, `7d`, `250ms`, or a bare number of seconds (the original ctop's syntax).

    Raises argparse.ArgumentTypeError, so argparse prints a clean usage error (exit code 2).
    """
    match = _DURATION.match(text or "")
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use a number with a unit, e.g. 30s, 5m, 1h, 7d")
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be greater than zero")
    return timedelta(seconds=value)


def parse_duration_or_zero(text: str) -> timedelta:
    return parse_duration(text, allow_zero=True)
