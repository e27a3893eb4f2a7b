"""The history tier: a judged height as one packed row, kept for years (README "Storage").

A height's verdict per validator is a letter per round and vote type (S signed, N nil, M missed,
U unknown, L late). The per-validator verdict rows (ValidatorVerdict) cost ~200 bytes each, 30 kB
a height for 150 validators; here a height is one row: its voter set (VoterSet, shared by every
height with the same validators) and one byte per validator per round kept, the prevote's letter
code in the high nibble, the precommit's in the low. Byte k * n + i is round (first kept + k) of
validator i of the set (ascending ids), n the set's size.

Written beside the verdicts, in the same transaction; read by the validator page over any range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from common.text import redact_url
from consensus.models import Endpoint
from validators.models import SetMembership

from . import latency
from .models import LATE, MISSED, NIL, SIGNED, UNKNOWN

# Letter <-> 4-bit code. 0: no letter (a round the validator has no verdict in).
CODES = {"": 0, SIGNED: 1, NIL: 2, MISSED: 3, UNKNOWN: 4, LATE: 5}
LETTERS = {code: letter for letter, code in CODES.items()}


def digest(ids: Iterable[int]) -> str:
    """The voter set's natural key: md5 of PostgreSQL's text form of the int[] ("{1,2,3}"), so
    SQL (the migration's backfill) and Python agree."""
    return hashlib.md5(("{" + ",".join(str(i) for i in ids) + "}").encode(), usedforsecurity=False).hexdigest()


def pack(validators: dict[int, tuple[int, str, str]], voters: list[int]) -> bytes:
    """`validators`: id -> (power, prevote letters, precommit letters), as a Judgement holds them;
    `voters`: the same ids, ascending."""
    rounds = max((len(pv) for _, pv, _ in validators.values()), default=0)
    out = bytearray(rounds * len(voters))
    n = len(voters)
    for i, vid in enumerate(voters):
        _, pv, pc = validators[vid]
        for k in range(rounds):
            out[k * n + i] = CODES[pv[k] if k < len(pv) else ""] << 4 | CODES[pc[k] if k < len(pc) else ""]
    return bytes(out)


def unpack(letters: bytes, n: int, i: int) -> tuple[str, str]:
    """Validator i's (prevote letters, precommit letters) of a packed row of a set of n."""
    pv, pc = [], []
    for k in range(len(letters) // n if n else 0):
        byte = letters[k * n + i]
        pv.append(LETTERS.get(byte >> 4, "?"))
        pc.append(LETTERS.get(byte & 0x0F, "?"))
    return "".join(pv), "".join(pc)


class VoterSets:
    """(chain, ids) -> VoterSet id, remembered once committed (a rolled-back insert must not leave
    an id for a row that is not there); made on first sight (concurrent analyzers agree through the
    natural key)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str], int] = {}

    def id_of(self, cur, chain_id: int, voters: list[int]) -> int:
        key = (chain_id, digest(voters))
        found = self._ids.get(key)
        if found is None:
            cur.execute(
                "INSERT INTO analysis_voterset (chain_id, validators, digest) VALUES (%s, %s, %s)"
                " ON CONFLICT (chain_id, digest) DO NOTHING",
                [chain_id, voters, key[1]],
            )
            cur.execute("SELECT id FROM analysis_voterset WHERE chain_id = %s AND digest = %s", key)
            found = cur.fetchone()[0]
            transaction.on_commit(lambda: self._ids.__setitem__(key, found))
        return found


_SETS = VoterSets()


def record(cur, rows: list[tuple[int, object]], judged_at: datetime) -> None:
    """History rows for newly recorded judgements: `rows` of (chain id, Judgement)."""
    # Voter sets and vantage points first: no other statement may run on this connection while the
    # COPY is open.
    vantages = _vantages({chain_id for chain_id, _ in rows})
    packed = []
    for chain_id, j in rows:
        voters = sorted(j.validators)
        if voters:  # no set recorded: nothing to keep
            packed.append((chain_id, j, _SETS.id_of(cur, chain_id, voters), pack(j.validators, voters)))
    if not packed:
        return
    with cur.copy(
        "COPY analysis_heighthistory (chain_id, height, judged_at, voters_id, rounds, unknown, from_commit, letters,"
        " delays, round_info, vantage) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(
            ["int2", "int8", "timestamptz", "int4", "int2", "bool", "bool", "bytea", "bytea", "bytea", "int4"]
        )
        for chain_id, j, set_id, letters in packed:
            delays = info = vantage = None
            if j.timing is not None:
                kept = sorted(j.timing.rounds)
                delays = latency.pack_delays(j.timing.delays, sorted(j.validators), len(kept))
                info = latency.pack_rounds([j.timing.rounds[r] for r in kept])
                vantage = vantages.get((chain_id, j.timing.vantage))
            row = (chain_id, j.height, judged_at, set_id, j.rounds, j.unknown, j.from_commit, letters)
            copy.write_row((*row, delays, info, vantage))


def _vantages(chain_ids: set[int]) -> dict[tuple[int, str], int]:
    """(chain id, the endpoint as stream entries name it, redacted) -> its Endpoint id."""
    return {(e.chain_id, redact_url(e.url)): e.pk for e in Endpoint.objects.filter(chain_id__in=chain_ids)}


@dataclass
class HeightLetters:
    height: int
    prevotes: str
    precommits: str
    unknown: bool
    from_commit: bool

    @property
    def missed(self) -> bool:
        return MISSED in self.prevotes or MISSED in self.precommits


def voter_positions(cur, chain_id: int, validator_id: int) -> list[tuple[int, int, int]]:
    """Every voter set of the chain that holds the validator: (set id, its position, the set's size),
    what reading its bytes of a history row needs."""
    cur.execute(
        "SELECT id, array_position(validators, %s) - 1, cardinality(validators) FROM analysis_voterset"
        " WHERE chain_id = %s AND validators @> ARRAY[%s]",
        [validator_id, chain_id, validator_id],
    )
    return cur.fetchall()


def validator_heights(chain_id: int, validator_id: int, count: int) -> list[HeightLetters]:
    """A validator's latest `count` judged heights, newest first: a backward walk of the (chain,
    height) key from its last membership (the set history's GiST index), over the rows of the sets
    that hold it, one byte read per height in SQL (the whole row only for a height of many rounds)."""
    with connection.cursor() as cur:
        sets = voter_positions(cur, chain_id, validator_id)
        if not sets:
            return []
        ranges = SetMembership.objects.filter(validator_id=validator_id).values_list("heights", flat=True)
        uppers = [r.upper for r in ranges]
        # No membership recorded (pruned, or a set judged before indexing): walk from the top.
        top = None if not uppers or None in uppers else max(uppers)
        cur.execute(
            "SELECT h.height, get_byte(h.letters, s.pos), CASE WHEN length(h.letters) > s.n THEN h.letters END,"
            " s.pos, s.n, h.unknown, h.from_commit FROM analysis_heighthistory h"
            " JOIN unnest(%s::int[], %s::int[], %s::int[]) AS s(sid, pos, n) ON s.sid = h.voters_id"
            " WHERE h.chain_id = %s AND h.height < %s ORDER BY h.height DESC LIMIT %s",
            [
                [sid for sid, _, _ in sets],
                [pos for _, pos, _ in sets],
                [n for _, _, n in sets],
                chain_id,
                top if top is not None else 2**63 - 1,
                count,
            ],
        )
        out = []
        for height, first, many, pos, n, unknown, from_commit in cur.fetchall():
            if many is None:
                pv, pc = LETTERS.get(first >> 4, "?"), LETTERS.get(first & 0x0F, "?")
            else:
                pv, pc = unpack(bytes(many), n, pos)
            out.append(HeightLetters(height, pv, pc, unknown, from_commit))
        return out
