"""Writes to the consensus record from outside the stream (the analyzer's commit look-ups)."""

from __future__ import annotations

from . import protocol as p
from .ingest.decode import Batch
from .ingest.store import ValidatorCache, persist
from .models import Chain


def store_commit(chain: Chain, commit: p.Commit) -> None:
    """Store a canonical commit's signatures, exactly as stream_events stores a backfilled one
    (idempotent on the natural key: a second store changes nothing)."""
    if commit.canonical is False:
        raise ValueError(f"height {commit.height}: only a canonical commit is stored")
    batch = Batch()
    batch.add_commit(chain.pk, commit)
    persist(batch, ValidatorCache())
