"""Deleting a chain: its per-height rows go first, in SQL (consensus.retention.purge_chain). A
vote written through the ORM (tests, a shell) finds its partition made, as the stream's are."""

from __future__ import annotations

from django.db.models.signals import pre_delete, pre_save
from django.dispatch import receiver

from .models import Chain, Vote, VoteSignature
from .partitions import PartitionCache
from .retention import purge_chain


@receiver(pre_delete, sender=Chain)
def purge_chain_rows(sender, instance: Chain, **kwargs) -> None:
    purge_chain(instance)


@receiver(pre_save, sender=Vote)
@receiver(pre_save, sender=VoteSignature)
def make_partition(sender, instance: Vote | VoteSignature, **kwargs) -> None:
    # A cache of its own each time: an ORM write may be rolled back with the partition it made.
    PartitionCache().ensure([(instance.chain_id, instance.height)])
