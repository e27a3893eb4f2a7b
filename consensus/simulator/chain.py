"""A simulated CometBFT chain: validators, rounds, votes and blocks, driven by a Scenario.

`SimChain.plan_height(h)` returns what a node would emit for height h, as timed emissions; the
server plays them out in real time. Consensus is modelled as a real node behaves (as captured on
a real localnet, tests/fixtures): a proposer that is offline makes round 0 time out with nil
votes and round 1 commit; with more than 1/3 of the power offline the node goes silent at step
Prevote (no climbing rounds) until enough validators return.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import random
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

from consensus.protocol import (
    FLAG_ABSENT,
    FLAG_COMMIT,
    FLAG_NIL,
    PRECOMMIT,
    PREVOTE,
    STEP_NUMBERS,
    Commit,
    CommitSig,
    CompleteProposal,
    NewRound,
    RoundStep,
    ValidatorInfo,
    Vote,
    encode,
)
from consensus.protocol.headers import header_hash

from .scenario import Scenario
from .slashing import SlashingBook


@dataclass(frozen=True)
class SimValidator:
    genesis_index: int
    pub_key: bytes  # 32 bytes, treated as an ed25519 public key
    power: int

    @cached_property
    def address(self) -> str:
        # CometBFT: address = first 20 bytes of SHA-256 of the ed25519 public key.
        return hashlib.sha256(self.pub_key).digest()[:20].hex().upper()

    def info(self, proposer_priority: int = 0) -> ValidatorInfo:
        return ValidatorInfo(
            address=self.address,
            pub_key_type="tendermint/PubKeyEd25519",
            pub_key=base64.b64encode(self.pub_key).decode(),
            voting_power=self.power,
            proposer_priority=proposer_priority,
        )


@dataclass(frozen=True)
class BlockRecord:
    """A committed height, kept compact (a load run commits hundreds of heights a second): the
    commit's signature slots are rebuilt on demand from one flag byte per validator, since the
    simulator's signatures are deterministic."""

    height: int
    block_hash: bytes
    time: datetime
    proposer: str
    round: int
    flags: bytes  # block_id_flag per validator index
    vals: tuple[SimValidator, ...]
    times: array  # seconds after `time`'s height start at which each validator precommitted
    start: datetime
    sign: Callable[[SimValidator, int, int, int], bytes]
    txs: int = 0  # transactions in the block (/blockchain's num_txs)
    header: dict | None = None  # its header as the node's JSON gives it (block_hash is its hash)

    @property
    def commit(self) -> Commit:
        """The canonical commit of this height (it appears in block height+1)."""
        sigs = []
        for v, flag, t in zip(self.vals, self.flags, self.times, strict=True):
            if flag == FLAG_ABSENT:
                sigs.append(CommitSig(FLAG_ABSENT, "", None, None))
            else:
                ts = self.start + timedelta(seconds=t)
                sigs.append(CommitSig(flag, v.address, ts, self.sign(v, self.height, self.round, PRECOMMIT)))
        return Commit(height=self.height, round=self.round, block_hash=self.block_hash, signatures=tuple(sigs))


@dataclass(frozen=True)
class Emission:
    """One thing the node does at `offset` seconds after the height started."""

    offset: float
    query: str  # "NewRound" | "NewRoundStep" | "Vote" | "CompleteProposal" | "" (not an event)
    event: object = None
    block: BlockRecord | None = None  # a committed block becomes visible over HTTP
    end: bool = False  # the height is over; the next starts at `offset`


def _step(h: int, r: int, name: str) -> RoundStep:
    return RoundStep(height=h, round=r, step=STEP_NUMBERS[name], step_name=name)


class SimChain:
    """One chain's consensus, deterministic for a given seed."""

    def __init__(
        self,
        chain_id: str = "sim-1",
        validators: int | list[int] = 4,
        block_time: float = 1.0,
        scenario: Scenario | None = None,
        seed: int = 0,
        timeout_propose: float | None = None,
        start_height: int = 1,
    ) -> None:
        powers = [1000] * validators if isinstance(validators, int) else list(validators)
        if not 1 <= len(powers) <= 500:
            raise ValueError("a simulated chain has 1 to 500 validators")
        if any(p <= 0 for p in powers):
            raise ValueError("validator powers must be positive")
        self.chain_id = chain_id
        self.block_time = max(0.0, block_time)
        self.timeout_propose = timeout_propose if timeout_propose is not None else min(1.0, self.block_time)
        self.scenario = scenario or Scenario()
        self.rng = random.Random(seed)
        self.genesis = [SimValidator(i, self._key(i), p) for i, p in enumerate(powers)]
        self._sets: list[tuple[int, tuple[SimValidator, ...]]] = [(start_height, self._sorted(self.genesis))]
        for change in sorted(self.scenario.set_changes, key=lambda c: c.height):
            self._apply_set_change(change)
        self.blocks: dict[int, BlockRecord] = {}
        # A chain may start at any height (a restarted demo continues instead of replaying heights
        # already stored); validator-set history begins there.
        if start_height < 1:
            raise ValueError("start height must be at least 1")
        self.latest_height = start_height - 1
        self.first_height = start_height
        self.genesis_time = datetime.now(UTC)
        self._carry: list[Vote] = []  # late precommits of the previous height
        # Votes on their way (Scenario.late_votes): (offset in this height, order, vote), and the
        # precommits still on their way when the previous height ended, by wall time.
        self._deferred: list[tuple[float, int, Vote]] = []
        self._in_flight: list[tuple[datetime, Vote]] = []
        self._turns: dict[int, int] = {}  # genesis index -> proposal turns so far
        self._positions: tuple[int, dict[str, int]] = (0, {})
        self.slashing = SlashingBook(self.scenario.slashing)

    # --- validator sets ---

    def _key(self, genesis_index: int) -> bytes:
        return hashlib.sha256(f"{self.chain_id}/validator/{genesis_index}".encode()).digest()

    @staticmethod
    def _sorted(vals) -> tuple[SimValidator, ...]:
        # CometBFT's order: voting power descending, then address ascending.
        return tuple(sorted(vals, key=lambda v: (-v.power, v.address)))

    def _apply_set_change(self, change) -> None:
        current = {v.genesis_index: v for v in self._sets[-1][1]}
        if change.power <= 0:
            current.pop(change.validator, None)
        else:
            current[change.validator] = SimValidator(change.validator, self._key(change.validator), change.power)
        if not current:
            raise ValueError(f"set change at height {change.height} would leave no validators")
        if self._sets[-1][0] == change.height:
            self._sets[-1] = (change.height, self._sorted(current.values()))
        else:
            self._sets.append((change.height, self._sorted(current.values())))

    def validator_set(self, height: int) -> tuple[SimValidator, ...]:
        chosen = self._sets[0][1]
        for start, vals in self._sets:
            if start <= height:
                chosen = vals
        return chosen

    def proposer(self, height: int, round_: int) -> tuple[int, SimValidator]:
        vals = self.validator_set(height)
        i = (height + round_) % len(vals)
        return i, vals[i]

    # --- consensus ---

    def _signature(self, v: SimValidator, h: int, r: int, t: int) -> bytes:
        return hashlib.sha512(f"{v.address}/{h}/{r}/{t}".encode()).digest()  # 64 bytes, like ed25519

    @staticmethod
    def transactions(h: int) -> int:
        """A block's transactions, as on a chain with traffic: 1 to 17, and one block in 20 empty
        (deterministic, so tests know them)."""
        return 0 if h % 20 == 0 else 1 + (h * 7) % 17

    def block_txs(self, h: int, proposer: SimValidator) -> int:
        return 0 if self.scenario.proposes_empty(proposer.genesis_index, h) else self.transactions(h)

    def block_header(self, h: int, r: int, start: datetime) -> dict:
        """Round r's proposal at height h: a header whose hash is the block's hash, as on a real
        chain (dated at the height's start; data_hash says whether it carries transactions)."""
        proposer = self.proposer(h, r)[1]
        prev = self.blocks.get(h - 1)
        txs = self.block_txs(h, proposer)
        return encode.header_doc(
            chain_id=self.chain_id,
            height=h,
            time=start,
            last_block_hash=prev.block_hash if prev else None,
            proposer=proposer.address,
            data_hash=hashlib.sha256(f"{self.chain_id}/txs/{h}/{r}".encode()).digest() if txs else None,
        )

    def emit_height(self, h: int, start: datetime) -> Iterator[Emission]:
        """What the node emits for height h (which starts, at NewHeight, at wall time `start`), lazily:
        rounds may climb forever when no proposal can gather +2/3. The last emission has end=True and
        the offset at which the next height starts; a generator that stops without it went silent.

        Late votes (Scenario.late_votes) are relayed when they arrive, in time order with the rest.
        Consensus goes on without waiting for them (the simulated network has +2/3 without them, or
        is modelled as if it had). A prevote still on its way when the height is committed is
        dropped, as CometBFT drops it; a precommit arrives during the next height's commit
        timeout, as CometBFT adds it to the last commit and relays it."""
        heap: list[tuple[float, int, Vote]] = []
        for when, vote in self._in_flight:
            heap.append(((when - start).total_seconds(), len(heap), vote))
        heapq.heapify(heap)
        self._in_flight = []
        self._deferred = []
        for em in self._emit_height(h, start):
            for item in self._deferred:
                heapq.heappush(heap, item)
            self._deferred = []
            while heap and heap[0][0] <= em.offset:
                offset, _, vote = heapq.heappop(heap)
                yield Emission(offset, "Vote", vote)
            if em.end:
                self._in_flight = [
                    (start + timedelta(seconds=offset), vote) for offset, _, vote in heap if vote.type == PRECOMMIT
                ]
            yield em

    def _send(self, v: SimValidator, h: int, t: float, vote: Vote) -> Emission | None:
        """The vote's emission now, or None: it is on its way (Scenario.late_votes)."""
        delay = self.scenario.vote_delay(v.genesis_index, h)
        if delay is None:
            return Emission(t, "Vote", vote)
        self._deferred.append((t + delay, id(vote), vote))
        return None

    def _emit_height(self, h: int, start: datetime) -> Iterator[Emission]:
        vals = self.validator_set(h)
        total = sum(v.power for v in vals)
        sc = self.scenario
        t = 0.0
        stall = sc.stall_before(h)
        if stall:
            t += stall.seconds
        yield Emission(t, "NewRoundStep", _step(h, 0, "RoundStepNewHeight"))
        # Most of a block's time is the commit timeout; consensus itself takes a few percent.
        tick = self.block_time * 0.004
        t += max(0.0, self.block_time - tick * (len(vals) / 2 + 6))
        halt = sc.halt_at(h)
        halted_once = False
        r = 0
        while True:
            offline = {v.genesis_index for v in vals if sc.is_offline(v.genesis_index, h)}
            if halt and not halted_once:
                offline |= set(halt.offline)
            online = [v for v in vals if v.genesis_index not in offline]
            pidx, proposer = self.proposer(h, r)
            header = self.block_header(h, r, start)
            block = header_hash(header)
            yield Emission(t, "NewRoundStep", _step(h, r, "RoundStepPropose"))
            yield Emission(t, "NewRound", NewRound(h, r, proposer.address, pidx))
            # Late precommits of the previous height arrive once this height's first round started.
            for vote in self._carry:
                yield Emission(t, "Vote", vote)
            self._carry = []
            has_proposal = proposer.genesis_index not in offline
            if has_proposal and sc.failed_proposals:
                turn = self._turns.get(proposer.genesis_index, 0)
                self._turns[proposer.genesis_index] = turn + 1
                has_proposal = not sc.fails_proposal(proposer.genesis_index, h, turn)
            if has_proposal:
                t += tick
                yield Emission(t, "CompleteProposal", CompleteProposal(h, r, block))
            else:
                t += self.timeout_propose + 0.1 * r
            yield Emission(t, "NewRoundStep", _step(h, r, "RoundStepPrevote"))
            order = online[:]
            self.rng.shuffle(order)
            prevote_power = 0
            for v in order:
                t += tick / 4
                nil = not has_proposal or sc.votes_nil(v.genesis_index, h)
                prevote_power += 0 if nil else v.power
                em = self._send(v, h, t, self._vote(v, vals, h, r, PREVOTE, None if nil else block, start, t))
                if em is not None:
                    yield em
            online_power = sum(v.power for v in online)
            if online_power * 3 <= total * 2:
                if halt and not halted_once:
                    # Silence at step Prevote until the offline validators return.
                    halted_once = True
                    t += halt.seconds
                    back = [
                        v for v in vals if v.genesis_index in halt.offline and not sc.is_offline(v.genesis_index, h)
                    ]
                    for v in back:
                        t += tick / 4
                        yield Emission(t, "Vote", self._vote(v, vals, h, r, PREVOTE, block, start, t))
                    yield Emission(t, "NewRoundStep", _step(h, r, "RoundStepPrevoteWait"))
                    t += tick
                    yield Emission(t, "NewRoundStep", _step(h, r, "RoundStepPrecommit"))
                    for v in vals:
                        if v.genesis_index not in offline - set(halt.offline) and not sc.is_offline(v.genesis_index, h):
                            t += tick / 4
                            yield Emission(t, "Vote", self._vote(v, vals, h, r, PRECOMMIT, None, start, t))
                    r += 1
                    t += tick
                    continue
                # Permanently below 2/3 online (an outage window, not a timed halt): stay silent.
                return
            t += tick
            yield Emission(t, "NewRoundStep", _step(h, r, "RoundStepPrecommit"))
            if prevote_power * 3 > total * 2:
                t, record, emissions = self._precommit_block(vals, h, r, order, block, start, t, tick, header)
                yield from emissions
                yield Emission(t, "", block=record)
                yield Emission(t + tick, "", end=True)
                return
            for v in order:
                t += tick / 4
                yield Emission(t, "Vote", self._vote(v, vals, h, r, PRECOMMIT, None, start, t))
            yield Emission(t, "NewRoundStep", _step(h, r, "RoundStepPrecommit"))
            t += self.block_time * 0.05 + tick
            r += 1

    def _precommit_block(
        self, vals, h, r, order, block, start, t, tick, header: dict
    ) -> tuple[float, BlockRecord, list[Emission]]:
        sc = self.scenario
        out: list[Emission] = []
        flags = bytearray([FLAG_ABSENT]) * len(vals)
        times = [0.0] * len(vals)
        power = 0
        total = sum(v.power for v in vals)
        committed_at = None
        for v in order:
            nil = sc.votes_nil(v.genesis_index, h)
            vote = self._vote(v, vals, h, r, PRECOMMIT, None if nil else block, start, t + tick / 4)
            i = self._position(vals, v)
            flags[i], times[i] = (FLAG_NIL if nil else FLAG_COMMIT), t + tick / 4
            if sc.precommits_late(v.genesis_index, h):
                self._carry.append(vote)  # sent after the next height starts; still in the commit
                continue
            t += tick / 4
            em = self._send(v, h, t, vote)
            if em is not None:
                out.append(em)
            power += 0 if nil else v.power
            if committed_at is None and power * 3 > total * 2:
                committed_at = t
                out.append(Emission(t, "NewRoundStep", _step(h, r, "RoundStepCommit")))
        if committed_at is None:  # late precommits were needed for +2/3: the commit comes with them
            committed_at = t
            out.append(Emission(t, "NewRoundStep", _step(h, r, "RoundStepCommit")))
        proposer = self.proposer(h, r)[1]
        record = BlockRecord(
            h,
            block,
            start,
            proposer.address,
            r,
            bytes(flags),
            vals,
            array("d", times),
            start,
            self._signature,
            self.block_txs(h, proposer),
            header,
        )
        return t, record, out

    def _position(self, vals: tuple[SimValidator, ...], v: SimValidator) -> int:
        key = id(vals)
        if self._positions[0] != key:
            self._positions = (key, {x.address: i for i, x in enumerate(vals)})
        return self._positions[1][v.address]

    def _vote(
        self, v: SimValidator, vals, h: int, r: int, type_: int, block: bytes | None, start: datetime, t: float
    ) -> Vote:
        return Vote(
            height=h,
            round=r,
            type=type_,
            block_hash=block,
            timestamp=start + timedelta(seconds=t),
            validator_address=v.address,
            validator_index=self._position(vals, v),
            signature=self._signature(v, h, r, type_),
        )

    # Blocks kept for /block and /commit; older ones answer "not available" like a pruned node.
    KEEP_BLOCKS = 50_000

    def commit_block(self, record: BlockRecord) -> None:
        if record.height > self.latest_height:
            self.slashing.record(record)
        self.blocks[record.height] = record
        self.latest_height = max(self.latest_height, record.height)
        self.blocks.pop(record.height - self.KEEP_BLOCKS, None)

    @property
    def earliest_height(self) -> int:
        return max(self.first_height, self.latest_height - self.KEEP_BLOCKS + 1)
