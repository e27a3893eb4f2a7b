"""Natural keys and the chain-id rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from consensus import partitions
from consensus.models import (
    SKEW_LIMIT,
    Chain,
    ChainIdMismatch,
    Round,
    RoundStep,
    Step,
    Validator,
    Vote,
    VoteType,
    block_tag,
)

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def make_vote(chain, validator, **kw) -> Vote:
    fields = dict(
        chain=chain,
        height=10,
        round=0,
        type=VoteType.PREVOTE,
        validator=validator,
        block_hash=bytes(32),
        timestamp=NOW,
        received_at=NOW,
    )
    fields.update(kw)
    return Vote(**fields)


@pytest.mark.django_db
def test_vote_natural_key_rejects_a_duplicate(chain):
    v = Validator.objects.create(chain=chain, address="AB" * 20)
    make_vote(chain, v).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        make_vote(chain, v, received_at=NOW.replace(second=5)).save(force_insert=True)
    # Idempotent bulk path used by the pipeline: a redelivered batch is a no-op.
    Vote.objects.bulk_create([make_vote(chain, v), make_vote(chain, v, type=VoteType.PRECOMMIT)], ignore_conflicts=True)
    assert Vote.objects.count() == 2
    # A nil vote in another round is a different vote.
    make_vote(chain, v, round=1, block_hash=None).save()
    assert Vote.objects.filter(block_tag__isnull=True).get().is_nil


@pytest.mark.django_db
def test_a_vote_keeps_its_block_tag_and_its_own_time_to_ten_milliseconds(chain):
    v = Validator.objects.create(chain=chain, address="AB" * 20)
    block = bytes.fromhex("FEDCBA98") + bytes(28)
    early = NOW - timedelta(seconds=1, milliseconds=234)
    make_vote(chain, v, block_hash=block, timestamp=early).save()
    make_vote(chain, v, type=VoteType.PRECOMMIT, timestamp=NOW + timedelta(hours=1)).save()
    prevote, precommit = Vote.objects.order_by("type")
    assert prevote.block_tag == block_tag(block) == -0x01234568  # signed, as PostgreSQL's int4
    assert prevote.skew == -123 and prevote.timestamp == NOW - timedelta(seconds=1, milliseconds=230)
    # A clock an hour off is kept as "at least 327 s off": all a skew diagnostic needs.
    assert precommit.skew == SKEW_LIMIT and precommit.timestamp == NOW + timedelta(seconds=327.67)
    # The rows live in the chain's partition, made on first write.
    assert [(p.lo, p.hi) for p in partitions.existing(chain.pk)] == [(0, chain.partition_heights)]


@pytest.mark.django_db
def test_round_and_step_natural_keys(chain):
    Round.objects.create(chain=chain, height=5, round=0, started_at=NOW)
    with pytest.raises(IntegrityError), transaction.atomic():
        Round.objects.create(chain=chain, height=5, round=0, started_at=NOW)
    RoundStep.objects.create(chain=chain, height=5, round=0, step=Step.PREVOTE, seen_at=NOW)
    with pytest.raises(IntegrityError), transaction.atomic():
        RoundStep.objects.create(chain=chain, height=5, round=0, step=Step.PREVOTE, seen_at=NOW)
    RoundStep.objects.create(chain=chain, height=5, round=1, step=Step.PREVOTE, seen_at=NOW)
    assert RoundStep.objects.count() == 2


@pytest.mark.django_db
def test_validator_address_unique_per_chain(chain):
    other = Chain.objects.create(name="other")
    Validator.objects.create(chain=chain, address="AB" * 20)
    Validator.objects.create(chain=other, address="AB" * 20)
    with pytest.raises(IntegrityError), transaction.atomic():
        Validator.objects.create(chain=chain, address="AB" * 20)


@pytest.mark.django_db
def test_chain_id_is_learned_then_enforced():
    c = Chain.objects.create(name="osmosis")
    c.check_chain_id("osmosis-1")
    assert Chain.objects.get(pk=c.pk).chain_id == "osmosis-1"
    c.check_chain_id("osmosis-1")
    with pytest.raises(ChainIdMismatch, match="osmo-test-5"):
        c.check_chain_id("osmo-test-5")
    with pytest.raises(ChainIdMismatch, match="empty"):
        c.check_chain_id("")


@pytest.mark.django_db
def test_each_record_links_to_its_page_without_the_model_knowing_the_pages():
    """The admin's "view on site" and any link to a chain or a validator come from the settings'
    ABSOLUTE_URL_OVERRIDES: the consensus models do not reverse the analysis app's URL names."""
    from django.urls import reverse

    from .conftest import ROOT

    chain = Chain.objects.create(name="osmosis", chain_id="osmosis-1")
    validator = Validator.objects.create(chain=chain, address="AB" * 20)
    assert chain.get_absolute_url() == reverse("analysis:chain", args=["osmosis"]) == "/chains/osmosis/"
    assert validator.get_absolute_url() == reverse("analysis:validator", args=["osmosis", "AB" * 20])
    for models_py in ("consensus/models.py", "validators/models.py"):
        assert "reverse(" not in (ROOT / models_py).read_text(), models_py
