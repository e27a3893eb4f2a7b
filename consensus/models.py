"""What ctop stores about chains and the consensus events read from them.

Event tables are the big ones (hundreds of millions of votes): compact column types, natural keys
as unique constraints (so every write is idempotent), and only the indexes a query needs. Fields are
declared so that 8-byte columns come first: PostgreSQL pads by column order, and at this volume
padding is real disk.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models


def default_partition_heights() -> int:
    return settings.CTOP["PARTITION_HEIGHTS"]


class ChainIdMismatch(Exception):
    """An endpoint reports a chain-id other than the chain's: it must not be used for this chain."""


class Chain(models.Model):
    """A network ctop watches, as named on the command line (`--networks osmosis,tcp://...`)."""

    id = models.SmallAutoField(primary_key=True)  # 2 bytes in every event row
    name = models.SlugField(max_length=64, unique=True, help_text="Name used on the command line, e.g. osmosis.")
    chain_id = models.CharField(
        max_length=128,
        blank=True,
        help_text="Chain-id the nodes report (/status node_info.network). Blank: learned from the first endpoint.",
    )
    enabled = models.BooleanField(default=True, help_text="Disabled chains are not watched by default.")
    rest_url = models.URLField(blank=True, help_text="Optional Cosmos SDK REST API (LCD) used for validator monikers.")
    created_at = models.DateTimeField(auto_now_add=True)
    # Fixed when the chain is made: vote partitions of a chain must not overlap (consensus.partitions).
    partition_heights = models.PositiveIntegerField(
        default=default_partition_heights,
        editable=False,
        help_text="Heights per vote partition (settings.CTOP_PARTITION_HEIGHTS when the chain was added).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def check_chain_id(self, reported: str) -> None:
        """Refuse an endpoint on another chain; adopt the chain-id if none is known yet."""
        if not reported:
            raise ChainIdMismatch(f"{self.name}: the endpoint reports an empty chain-id")
        if not self.chain_id:
            # Conditional update: two processes learning it at once cannot disagree silently.
            Chain.objects.filter(pk=self.pk, chain_id="").update(chain_id=reported)
            self.refresh_from_db(fields=["chain_id"])
        if self.chain_id != reported:
            raise ChainIdMismatch(
                f"{self.name}: endpoint is on chain-id {reported!r}, expected {self.chain_id!r}; refusing it"
            )


class Validator(models.Model):
    """A validator of one chain, identified by its consensus address (uppercase hex).

    Part of the consensus record: every vote names one, and stream_events creates the unknown ones
    (by address alone) as votes arrive. Set history (validators.SetMembership) and verdicts point
    here. The table keeps the name it was created under in the validators app."""

    id = models.AutoField(primary_key=True)  # 4 bytes in every vote row
    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="validators")
    address = models.CharField(max_length=40, help_text="Consensus address, uppercase hex (20 bytes).")
    pub_key_type = models.CharField(max_length=64, blank=True)
    pub_key = models.CharField(max_length=128, blank=True, help_text="Base64, as /validators reports it.")
    moniker = models.CharField(max_length=128, blank=True)
    operator_address = models.CharField(max_length=128, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "validators_validator"
        ordering = ["chain", "address"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "address"], name="validator_natural_key"),
        ]

    def __str__(self) -> str:
        return self.moniker or self.address

    @property
    def short(self) -> str:
        return self.moniker or f"{self.address[:12]}…"


class Endpoint(models.Model):
    """One RPC endpoint of a chain. Lower priority numbers are preferred; others are failovers."""

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="endpoints")
    url = models.CharField(max_length=255, help_text="RPC base URL, e.g. http://127.0.0.1:26657")
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower is preferred.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["chain", "priority", "id"]
        constraints = [models.UniqueConstraint(fields=["chain", "url"], name="endpoint_unique_url")]

    def __str__(self) -> str:
        return f"{self.chain.name} {self.url}"


class VoteType(models.IntegerChoices):
    # The wire values of SignedMsgType.
    PREVOTE = 1, "prevote"
    PRECOMMIT = 2, "precommit"


SKEW_UNIT = timedelta(milliseconds=10)
SKEW_LIMIT = 32767  # int2: a vote's clock is kept to +-327.67 s of its arrival, clamped beyond


def block_tag(block_hash: bytes | None) -> int | None:
    """A vote's block as the first 4 bytes of its hash (signed, as PostgreSQL's int4); None: nil."""
    return int.from_bytes(block_hash[:4], "big", signed=True) if block_hash else None


def skew_of(timestamp: datetime, received_at: datetime) -> int:
    """The vote's own timestamp minus its arrival, in 10 ms units, clamped to int2."""
    units = round((timestamp - received_at) / SKEW_UNIT)
    return max(-SKEW_LIMIT, min(SKEW_LIMIT, units))


class Vote(models.Model):
    """One vote of one validator in one round of one height, as seen on the websocket.

    The biggest table by far, so every byte counts (README "Storage"): the natural key is the
    primary key (no surrogate id), the block is a 4-byte tag (the round's proposal holds the full
    hash: Round.block_hash), the vote's own timestamp is kept as its offset from the arrival, the
    validator's index is the set's (validators.Membership.position), and the signature is kept
    only when CTOP_VOTE_SIGNATURES is on, in a table of its own (VoteSignature: a ninth column,
    even NULL, would widen every row's null bitmap and cost 8 bytes). Physical column order (the
    migration's CREATE TABLE) puts the 8-byte columns first: 56 bytes a row, no padding.
    Range-partitioned by (chain, height): consensus.partitions.
    """

    pk = models.CompositePrimaryKey("chain", "height", "round", "type", "validator")
    height = models.BigIntegerField()
    received_at = models.DateTimeField(help_text="When ctop's subscriber received the frame.")
    # Per-height rows are never cascaded by Django (its Python-side cascade over millions of rows
    # would take hours): deleting a chain drops its partitions and deletes the rest in SQL first
    # (consensus.signals). DO_NOTHING here; the database's foreign keys still refuse orphans.
    chain = models.ForeignKey(Chain, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    validator = models.ForeignKey(Validator, on_delete=models.DO_NOTHING, db_index=False, related_name="votes")
    block_tag = models.IntegerField(null=True, blank=True, help_text="First 4 bytes of the block hash; NULL: nil.")
    type = models.SmallIntegerField(choices=VoteType.choices)
    # int32 on the wire, but a round past 32767 would take years of timeouts: the protocol layer
    # refuses such values, and 2 bytes keep the natural-key index tuple 8 bytes smaller.
    round = models.SmallIntegerField()
    skew = models.SmallIntegerField(default=0, help_text="The vote's own timestamp minus received_at, 10 ms units.")

    # No Meta: the table is made by hand (partitioned, 8-byte columns first): migration consensus 0007.

    def __init__(self, *args, timestamp: datetime | None = None, block_hash: bytes | None = None, **kwargs) -> None:
        # The wire's terms, for code and tests that build a vote from a decoded one.
        if block_hash is not None:
            kwargs.setdefault("block_tag", block_tag(block_hash))
        super().__init__(*args, **kwargs)
        if timestamp is not None and self.received_at is not None:
            self.skew = skew_of(timestamp, self.received_at)

    def __str__(self) -> str:
        return f"{self.get_type_display()} h={self.height} r={self.round}"

    @property
    def timestamp(self) -> datetime:
        """The vote's own timestamp, to 10 ms (clamped at +-327 s from its arrival)."""
        return self.received_at + self.skew * SKEW_UNIT

    @property
    def is_nil(self) -> bool:
        return self.block_tag is None


class VoteSignature(models.Model):
    """A vote's signature, kept only with CTOP_VOTE_SIGNATURES on (off by default: ctop never
    verifies signatures, and the chain's commit holds the canonical ones). Partitioned with the
    votes, dropped with them."""

    pk = models.CompositePrimaryKey("chain", "height", "round", "type", "validator")
    height = models.BigIntegerField()
    chain = models.ForeignKey(Chain, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    validator = models.ForeignKey(Validator, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    round = models.SmallIntegerField()
    type = models.SmallIntegerField(choices=VoteType.choices)
    signature = models.BinaryField()
    # No Meta: the table is made by hand (partitioned): migration consensus 0007.

    def __str__(self) -> str:
        return f"signature h={self.height} r={self.round} t={self.type}"


class Round(models.Model):
    """A round of a height (from NewRound), with its proposer."""

    id = models.BigAutoField(primary_key=True)
    height = models.BigIntegerField()
    started_at = models.DateTimeField(help_text="When ctop received the NewRound event.")
    chain = models.ForeignKey(Chain, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    round = models.SmallIntegerField()
    proposer = models.ForeignKey(
        Validator,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    proposer_index = models.IntegerField(null=True, blank=True)
    block_hash = models.BinaryField(null=True, blank=True, help_text="The proposal's block (CompleteProposal).")
    # Vote latency is measured from here (analysis.latency): votes before it cannot be for the block.
    proposal_at = models.DateTimeField(
        null=True, blank=True, help_text="When ctop received CompleteProposal (no proposal: NULL)."
    )
    endpoint = models.CharField(
        max_length=255, blank=True, help_text="The endpoint (redacted) that reported the round: the vantage point."
    )

    class Meta:
        constraints = [
            # Natural key; its index also serves "latest height of a chain" (ORDER BY height DESC).
            models.UniqueConstraint(fields=["chain", "height", "round"], name="round_natural_key"),
        ]

    def __str__(self) -> str:
        return f"h={self.height} r={self.round}"


class Step(models.IntegerChoices):
    # CometBFT's RoundStepType numbers, as /consensus_state reports them.
    NEW_HEIGHT = 1, "NewHeight"
    NEW_ROUND = 2, "NewRound"
    PROPOSE = 3, "Propose"
    PREVOTE = 4, "Prevote"
    PREVOTE_WAIT = 5, "PrevoteWait"
    PRECOMMIT = 6, "Precommit"
    PRECOMMIT_WAIT = 7, "PrecommitWait"
    COMMIT = 8, "Commit"


class RoundStep(models.Model):
    """A step a round went through (from NewRoundStep), first time seen."""

    id = models.BigAutoField(primary_key=True)
    height = models.BigIntegerField()
    seen_at = models.DateTimeField()
    chain = models.ForeignKey(Chain, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    round = models.SmallIntegerField()
    step = models.SmallIntegerField(choices=Step.choices)

    class Meta:
        constraints = [
            # The node may repeat a step; the first sighting is kept.
            models.UniqueConstraint(fields=["chain", "height", "round", "step"], name="roundstep_natural_key"),
        ]

    def __str__(self) -> str:
        return f"h={self.height} r={self.round} {self.get_step_display()}"


class BlockIdFlag(models.IntegerChoices):
    ABSENT = 1, "absent"
    COMMIT = 2, "commit"
    NIL = 3, "nil"


class CommitSignature(models.Model):
    """A signature slot of a block's canonical commit (`/block?height=H+1` last_commit).

    Backfills precommit participation for heights the websocket missed, and lets the analysis
    cross-check what it saw against what the chain recorded.
    """

    id = models.BigAutoField(primary_key=True)
    height = models.BigIntegerField()
    timestamp = models.DateTimeField(null=True, blank=True)
    chain = models.ForeignKey(Chain, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    round = models.SmallIntegerField(help_text="The commit round.")
    validator_index = models.IntegerField()
    flag = models.SmallIntegerField(choices=BlockIdFlag.choices)
    validator = models.ForeignKey(
        Validator,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
        help_text="Empty for absent slots until resolved through the set of that height.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain", "height", "validator_index"], name="commitsig_natural_key"),
        ]

    def __str__(self) -> str:
        return f"h={self.height} #{self.validator_index} {self.get_flag_display()}"


class Block(models.Model):
    """A committed block's facts from /blockchain (analysis.lookups fetches them): its proposer, its
    own time and its transactions, for proposer statistics and the empty-blocks alert. Long-term,
    like the history tier (~100 bytes a height); pruned with it (prune_events --history-older-than)."""

    pk = models.CompositePrimaryKey("chain", "height")
    height = models.BigIntegerField()
    time = models.DateTimeField(help_text="The block header's time (the proposer's clock).")
    chain = models.ForeignKey(Chain, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    proposer = models.ForeignKey(Validator, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    txs = models.IntegerField(help_text="Transactions in the block.")
    size = models.IntegerField(help_text="The block's size in bytes.")

    def __str__(self) -> str:
        return f"h={self.height} {self.txs} tx"


class Gap(models.Model):
    """Heights ctop did not (fully) observe: the analysis marks them unknown, never as misses."""

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="gaps")
    from_height = models.BigIntegerField()
    to_height = models.BigIntegerField(help_text="Inclusive.")
    reason = models.CharField(max_length=255)
    detected_at = models.DateTimeField()
    backfilled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain", "from_height", "to_height"], name="gap_natural_key"),
            models.CheckConstraint(condition=models.Q(to_height__gte=models.F("from_height")), name="gap_ordered"),
        ]
        indexes = [
            # "Does height H fall in a gap?" (analysis) and the backfill queue.
            models.Index(fields=["chain", "to_height"], name="gap_chain_to"),
        ]

    def __str__(self) -> str:
        return f"{self.chain} {self.from_height}..{self.to_height}"


class DeadLetter(models.Model):
    """A stream entry (or one frame of it) that could not be decoded: kept with the reason,
    acknowledged, never retried in a loop."""

    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    stream = models.CharField(max_length=200)
    entry_id = models.CharField(max_length=64)
    frame_index = models.IntegerField(default=0, help_text="Position of the frame within the entry.")
    payload = models.TextField(
        help_text="The raw frame or entry as read from Redis, cut to CTOP_DEAD_LETTER_MAX_KB (see length)."
    )
    length = models.IntegerField(default=0, help_text="The original length of the payload, in characters.")
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "entry_id", "frame_index"], name="deadletter_natural_key"),
        ]

    def __str__(self) -> str:
        return f"{self.stream} {self.entry_id}"


class FeedState(models.TextChoices):
    """What the subscriber reports about a chain's feed."""

    CONNECTED = "connected", "connected"
    DISCONNECTED = "disconnected", "disconnected"
    ALL_FAILING = "all_failing", "every endpoint failing"


class ChainStatus(models.Model):
    """What the subscriber last said about a chain: connected endpoint, or why ctop is blind."""

    chain = models.OneToOneField(Chain, on_delete=models.CASCADE, primary_key=True, related_name="status")
    state = models.CharField(max_length=32, choices=FeedState.choices)
    endpoint = models.CharField(max_length=255, blank=True)
    reason = models.TextField(blank=True)
    height = models.BigIntegerField(null=True, blank=True, help_text="Latest height the subscriber had seen.")
    updated_at = models.DateTimeField(
        help_text="When the subscriber reported it (it repeats its state as a heartbeat)."
    )
    since = models.DateTimeField(null=True, blank=True, help_text="When this state (and endpoint) began.")
    interval = models.FloatField(
        null=True, blank=True, help_text="Seconds between the subscriber's reports; older reports are stale."
    )

    class Meta:
        verbose_name_plural = "chain statuses"

    def __str__(self) -> str:
        return f"{self.chain} {self.state}"
