"""Committed blocks' facts (consensus.Block): fetched from /blockchain for judged heights, checked
against what ctop knows, and read back as each proposer's record (transactions, empty-block streak,
the chain's block time) for the performance page and the empty-blocks alert.

A node's /blockchain reply is untrusted like any other. A block meta is kept only if its header
hashes (recomputed, consensus.protocol.headers) to its block id, that block is one ctop saw
proposed at that height (Round.block_hash, from CompleteProposal), its chain-id is the chain's, its
proposer is in that height's recorded active set, and its transaction count agrees with the
header's data hash about emptiness. So whether a block was empty, and who proposed it when, are the
chain's facts, not the endpoint's word (the exact count of a non-empty block still is). Anything
else is refused (logged) and not asked for again in a loop. Heights ctop did not see proposed (a
gap, a backfill) get no meta.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from common.text import one_line, redact_url
from consensus import protocol as p
from consensus.models import Block, Chain, Round, Validator
from consensus.protocol.headers import EMPTY_HASH
from consensus.rpc import RPCClient

from .models import HeightHistory

log = logging.getLogger("ctop.analyzer")

PAGE = 20  # /blockchain lists at most 20 block metas a call
CLOCK_AHEAD = timedelta(minutes=10)  # a block time later than this past ctop's clock is a lie


@dataclass
class FetchResult:
    stored: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (height, why)
    covered: int = 0  # the highest height answered for (stored or refused): not asked again


def check(chain: Chain, lo: int, hi: int, metas: list[p.BlockMeta], now: datetime) -> tuple[list[Block], list]:
    """The metas worth keeping as Block rows, and the refused ones with the reason."""
    refused: list[tuple[int, str]] = []
    seen: set[int] = set()
    ids = dict(
        Validator.objects.filter(chain=chain, address__in={m.proposer_address for m in metas}).values_list(
            "address", "id"
        )
    )
    proposals = _proposals(chain.pk, lo, hi)
    candidates: list[tuple[p.BlockMeta, int]] = []
    for m in metas:
        if not lo <= m.height <= hi or m.height in seen:
            refused.append((m.height, f"height {m.height} was not asked for (asked {lo}..{hi}) or came twice"))
        elif chain.chain_id and m.chain_id != chain.chain_id:
            refused.append((m.height, f"chain-id {one_line(m.chain_id, 64)!r} is not {chain.chain_id!r}"))
        elif m.time > now + CLOCK_AHEAD:
            refused.append((m.height, f"block time {m.time.isoformat()} is in the future"))
        elif m.header_hash is None or m.header_hash != m.block_hash:
            refused.append((m.height, "its header does not hash to its block id"))
        elif m.block_hash not in proposals.get(m.height, ()):
            refused.append((m.height, "not a block ctop saw proposed at that height"))
        elif (m.num_txs == 0) != (m.data_hash in (None, EMPTY_HASH)):
            refused.append((m.height, f"{m.num_txs} transactions, but the header's data hash says otherwise"))
        elif m.proposer_address not in ids:
            refused.append((m.height, f"proposer {m.proposer_address} is not a known validator of the chain"))
        else:
            candidates.append((m, ids[m.proposer_address]))
        seen.add(m.height)
    members = _in_set(chain.pk, [(m.height, vid) for m, vid in candidates])
    rows = []
    for m, vid in candidates:
        if (m.height, vid) not in members:
            refused.append((m.height, f"proposer {m.proposer_address} was not in the active set at {m.height}"))
            continue
        rows.append(Block(chain=chain, height=m.height, time=m.time, proposer_id=vid, txs=m.num_txs, size=m.block_size))
    return rows, refused


def _proposals(chain_id: int, lo: int, hi: int) -> dict[int, set[bytes]]:
    """The blocks ctop saw proposed at heights lo..hi (every round's), by height."""
    out: dict[int, set[bytes]] = {}
    rows = Round.objects.filter(chain_id=chain_id, height__gte=lo, height__lte=hi, block_hash__isnull=False)
    for height, block in rows.values_list("height", "block_hash"):
        out.setdefault(height, set()).add(bytes(block))
    return out


def _in_set(chain_id: int, pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The (height, validator id) pairs where the validator was in the recorded active set."""
    if not pairs:
        return set()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT q.h, q.v FROM unnest(%s::bigint[], %s::int[]) AS q(h, v) WHERE EXISTS (SELECT 1 FROM"
            " validators_setmembership s WHERE s.chain_id = %s AND s.validator_id = q.v AND s.heights @> q.h)",
            [[h for h, _ in pairs], [v for _, v in pairs], chain_id],
        )
        return {(h, v) for h, v in cur.fetchall()}


def fetch(chain: Chain, client: RPCClient, lo: int, hi: int, *, deadline: float | None = None) -> FetchResult:
    """Block metas of lo..hi, one page at a time, stored (idempotent on (chain, height)), until the
    `deadline` (time.monotonic()) if one is given. Raises the client's errors (EndpointError,
    RPCError) for the page that failed; what came before is kept."""
    result = FetchResult(covered=lo - 1)
    for a in range(lo, hi + 1, PAGE):
        if deadline is not None and time.monotonic() > deadline:
            break  # a slow endpoint: the rest is asked for by a later job
        b = min(hi, a + PAGE - 1)
        last, metas = client.blockchain(a, b)
        rows, refused = check(chain, a, b, metas, timezone.now())
        Block.objects.bulk_create(rows, ignore_conflicts=True)
        result.stored += len(rows)
        result.refused += refused
        for height, why in refused[:3]:  # one page of lies is a few lines, not twenty
            log.warning("%s h=%d: block meta from %s refused: %s", chain.name, height, redact_url(client.url), why)
        # Heights the node answered for are done, kept or refused (a lie is not asked for again);
        # heights above its latest (a node behind) are asked for again later. Heights it pruned
        # come back as nothing: done too, there is nobody else to ask.
        result.covered = min(b, last)
        if last < b:
            break
    return result


def next_wanted(chain: Chain, judged_to: int, backlog: int, covered: int = 0) -> int:
    """The first height whose block meta is wanted: judged, past the newest stored and past
    `covered` (the heights already answered for), at most `backlog` heights behind the newest judged
    one (a long outage is not fetched back block by block)."""
    newest = Block.objects.filter(chain=chain).order_by("-height").values_list("height", flat=True).first()
    # Nothing before the first judged height: its set may not be recorded (the meta could not be checked).
    first = HeightHistory.objects.filter(chain=chain).order_by("height").values_list("height", flat=True).first()
    return max((newest or 0) + 1, covered + 1, judged_to - backlog + 1, first or 1)


# --- reading ---


@dataclass
class BlockRecord:
    """One proposer's committed blocks over a window of heights."""

    blocks: int = 0
    empty: int = 0
    txs: int = 0
    streak: int = 0  # its latest blocks in a row that were empty
    streak_from: int | None = None  # the height of the streak's first block


@dataclass
class ChainBlocks:
    heights: int = 0  # blocks read
    by_proposer: dict[int, BlockRecord] = field(default_factory=dict)
    block_time_s: float | None = None  # the median interval between consecutive blocks
    rows: list[tuple[int, int, int]] = field(default_factory=list)  # (height, proposer, txs), newest first

    def others_since(self, proposer: int, height: int) -> tuple[int, int]:
        """(blocks, empty blocks) of the other proposers from `height` on."""
        mine = [txs for h, p, txs in self.rows if h >= height and p != proposer]
        return len(mine), mine.count(0)


def chain_blocks(chain_id: int, heights: int, *, above: int | None = None) -> ChainBlocks:
    """The latest `heights` blocks stored for the chain (only those above height `above` if given:
    old metas of a chain whose fetching stopped are not today's figures), per proposer."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT height, time, proposer_id, txs FROM consensus_block WHERE chain_id = %s AND height > %s"
            " ORDER BY height DESC LIMIT %s",
            [chain_id, above if above is not None else 0, heights],
        )
        rows = cur.fetchall()
    out = ChainBlocks(heights=len(rows), rows=[(h, p, txs) for h, _, p, txs in rows])
    ended: set[int] = set()  # proposers whose empty streak is over
    for height, _, proposer, txs in rows:
        rec = out.by_proposer.setdefault(proposer, BlockRecord())
        rec.blocks += 1
        rec.txs += txs
        if txs == 0:
            rec.empty += 1
            if proposer not in ended:
                rec.streak += 1
                rec.streak_from = height
        else:
            ended.add(proposer)
    intervals = sorted((a[1] - b[1]).total_seconds() for a, b in itertools.pairwise(rows) if a[0] == b[0] + 1)
    if intervals:
        out.block_time_s = intervals[len(intervals) // 2]
    return out
