"""Feeding stream_events in tests: stream entries as the subscriber writes them, a consumer drained
until idle, and what PostgreSQL holds afterwards."""

from __future__ import annotations

from consensus import protocol as p
from consensus.ingest import StreamConsumer
from consensus.models import Round, RoundStep, Vote, block_tag
from consensus.protocol.stream import KIND_FRAMES, StreamEntry, encode_frames
from consensus.streams import stream_key

NS = 1_795_824_259_000_000_000


def entry(kind: bytes, payload: bytes, chain: str = "testnet", t: int = NS) -> dict:
    return StreamEntry(kind=kind, chain=chain, received_ns=t, payload=payload, endpoint="http://x").to_fields()


def fill(client, chain: str, lines: list[str], per_entry: int = 20) -> int:
    """The real captured frames, in bursts as the subscriber writes them."""
    key = stream_key(chain)
    for i in range(0, len(lines), per_entry):
        chunk = [line.encode() for line in lines[i : i + per_entry]]
        client.xadd(key, entry(KIND_FRAMES, encode_frames(chunk), chain, NS + i))
    return client.xlen(key)


def consumer(chain, client, name="c1", **kw) -> StreamConsumer:
    c = StreamConsumer([chain], client=client, consumer=name, **kw)
    c.ensure_groups()
    return c


def drain(c: StreamConsumer, rounds: int = 50) -> None:
    idle = 0
    for _ in range(rounds):
        if c.run_once() == 0:
            idle += 1
            if idle > 2 and c.idle:
                return


def snapshot() -> dict:
    return {
        "votes": sorted(Vote.objects.values_list("height", "round", "type", "validator__address", "block_tag")),
        "rounds": sorted(Round.objects.values_list("height", "round", "proposer__address", "block_hash")),
        "steps": sorted(RoundStep.objects.values_list("height", "round", "step")),
    }


def expected_votes(lines) -> set:
    out = set()
    for line in lines:
        v = p.decode_frame(line)
        if isinstance(v, p.Vote):
            out.add((v.height, v.round, v.type, v.validator_address, block_tag(v.block_hash)))
    return out
