"""Command-line value parsing shared by ctop's management commands."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

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


class OneLineParser(CommandParser):
    """A usage error is one line on stderr and exit status 2 (`manage.py x: error: ...`), not the
    usage block first: `--help` shows usage; a log or a supervisor keeps the line that matters.
    Sub-commands' parsers (created from this class) do the same."""

    def error(self, message: str):
        if self.called_from_command_line is False:  # call_command(): an exception, as Django does
            raise CommandError(f"Error: {message}")
        self.exit(2, f"{self.prog}: error: {message}\n")


class CtopCommand(BaseCommand):
    """Every ctop management command: one-line usage errors with exit status 2."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineParser  # same state; only error() differs
        return parser
