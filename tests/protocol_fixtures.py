"""Loading the real captures under tests/fixtures (kept exactly as received, never edited)."""

from __future__ import annotations

import json
from functools import cache

from .conftest import FIXTURES

VAL1, VAL2, VAL3, VAL0 = (
    "6A4895BA799A1BAADE37E063FF51EF79F34846E4",
    "AB517AD9A420BB6800BDAC43E1E39D751A8CDF42",
    "B1D4E23A9E887224E9B3C38511215A22BB1A62F3",
    "D6086739A1C08BFE46C89081B9BEBD3B6DB91FBE",
)
ADDRESSES = [VAL1, VAL2, VAL3, VAL0]  # by validator index
WS_FILES = [
    "ws_frames_normal.jsonl",
    "ws_frames_one_down.jsonl",
    "ws_frames_halt.jsonl",
    "ws_frames_halt_steady.jsonl",
    "ws_frames_recovery.jsonl",
    "ws_frames_errors.jsonl",
]


@cache
def frames(name: str) -> tuple[str, ...]:
    return tuple(line.rstrip("\n") for line in (FIXTURES / name).read_text().splitlines() if line.strip())


@cache
def http(name: str) -> str:
    return (FIXTURES / name).read_text()


def all_frames() -> list[str]:
    return [line for name in WS_FILES for line in frames(name)]


def raw(line: str) -> dict:
    return json.loads(line)
