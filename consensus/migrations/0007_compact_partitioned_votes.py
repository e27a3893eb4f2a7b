"""The vote table becomes compact and range-partitioned by (chain, height), in place.

238 bytes a vote before, ~97 after (README "Storage"): the natural key is the primary key (no
surrogate id, no second index), the block is a 4-byte tag, the vote's timestamp is its offset
from the arrival (10 ms units), validator_index goes (the set history has it), and signatures are
kept only with CTOP_VOTE_SIGNATURES on. Existing votes are copied into partitions made for them,
in key order (a packed index), and the old table is dropped: one transaction, so a failure
leaves the old table as it was.
"""

from __future__ import annotations

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import consensus.models

NEW_TABLE = """
ALTER TABLE consensus_vote RENAME TO consensus_vote_old;
ALTER INDEX consensus_vote_pkey RENAME TO consensus_vote_old_pkey;
ALTER INDEX vote_natural_key RENAME TO vote_old_natural_key;
CREATE TABLE consensus_vote (
    height bigint NOT NULL,
    received_at timestamptz NOT NULL,
    validator_id integer NOT NULL,
    block_tag integer NULL,
    chain_id smallint NOT NULL,
    round smallint NOT NULL,
    type smallint NOT NULL,
    skew smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, height, round, type, validator_id)
) PARTITION BY RANGE (chain_id, height);
CREATE TABLE consensus_votesignature (
    height bigint NOT NULL,
    validator_id integer NOT NULL,
    chain_id smallint NOT NULL,
    round smallint NOT NULL,
    type smallint NOT NULL,
    signature bytea NOT NULL,
    PRIMARY KEY (chain_id, height, round, type, validator_id)
) PARTITION BY RANGE (chain_id, height);
"""

FOREIGN_KEYS = """
ALTER TABLE consensus_vote ADD FOREIGN KEY (validator_id) REFERENCES validators_validator (id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE consensus_vote ADD FOREIGN KEY (chain_id) REFERENCES consensus_chain (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE consensus_votesignature ADD FOREIGN KEY (validator_id) REFERENCES validators_validator (id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE consensus_votesignature ADD FOREIGN KEY (chain_id) REFERENCES consensus_chain (id)
    DEFERRABLE INITIALLY DEFERRED;
"""

COPY_VOTES = """
INSERT INTO consensus_vote (height, received_at, validator_id, block_tag, chain_id, round, type, skew)
SELECT height, received_at, validator_id,
       CASE WHEN block_hash IS NULL OR length(block_hash) = 0 THEN NULL
            ELSE ('x' || rpad(encode(substring(block_hash FROM 1 FOR 4), 'hex'), 8, '0'))::bit(32)::integer END,
       chain_id, round, type,
       greatest(-32767, least(32767, round(extract(epoch FROM ("timestamp" - received_at)) * 100)))::smallint
FROM consensus_vote_old
ORDER BY chain_id, height, round, type, validator_id
"""

COPY_SIGNATURES = """
INSERT INTO consensus_votesignature (height, validator_id, chain_id, round, type, signature)
SELECT height, validator_id, chain_id, round, type, signature FROM consensus_vote_old
WHERE signature IS NOT NULL AND length(signature) > 0
ORDER BY chain_id, height, round, type, validator_id
"""


def move_votes(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cur:
        cur.execute(NEW_TABLE)
        cur.execute(
            "SELECT v.chain_id, min(v.height), max(v.height), c.partition_heights FROM consensus_vote_old v"
            " JOIN consensus_chain c ON c.id = v.chain_id GROUP BY v.chain_id, c.partition_heights"
        )
        for chain_id, lo, hi, span in cur.fetchall():
            # Only the partitions that hold votes: a chain's heights can jump (a snapshot restart).
            cur.execute(
                "SELECT DISTINCT height - height %% %s FROM consensus_vote_old WHERE chain_id = %s",
                [span, chain_id],
            )
            for (start,) in cur.fetchall():
                for parent in ("consensus_vote", "consensus_votesignature"):
                    cur.execute(
                        f'CREATE TABLE "{parent}_c{int(chain_id)}_h{int(start)}" PARTITION OF {parent}'
                        f" FOR VALUES FROM ({int(chain_id)}, {int(start)}) TO ({int(chain_id)}, {int(start + span)})"
                    )
        cur.execute(COPY_VOTES)
        if settings.CTOP["VOTE_SIGNATURES"]:
            cur.execute(COPY_SIGNATURES)
        # Foreign keys after the copy: checked in one pass each, not queued per row until commit
        # (hundreds of millions of pending trigger events would not fit in memory).
        cur.execute(FOREIGN_KEYS)
        cur.execute("DROP TABLE consensus_vote_old")


class Migration(migrations.Migration):
    atomic = True

    dependencies = [
        ("consensus", "0006_feed_state_choices"),
        ("validators", "0003_validator_moved_to_consensus"),
    ]

    operations = [
        migrations.AddField(
            model_name="chain",
            name="partition_heights",
            field=models.PositiveIntegerField(
                default=consensus.models.default_partition_heights,
                editable=False,
                help_text="Heights per vote partition (settings.CTOP_PARTITION_HEIGHTS when the chain was added).",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(move_votes, reverse_code=None)],
            state_operations=[
                migrations.CreateModel(
                    name="VoteSignature",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "chain",
                                "height",
                                "round",
                                "type",
                                "validator",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("height", models.BigIntegerField()),
                        ("round", models.SmallIntegerField()),
                        ("type", models.SmallIntegerField(choices=[(1, "prevote"), (2, "precommit")])),
                        ("signature", models.BinaryField()),
                        (
                            "chain",
                            models.ForeignKey(
                                db_index=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="+",
                                to="consensus.chain",
                            ),
                        ),
                        (
                            "validator",
                            models.ForeignKey(
                                db_index=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="+",
                                to="consensus.validator",
                            ),
                        ),
                    ],
                ),
                migrations.RemoveConstraint(model_name="vote", name="vote_natural_key"),
                migrations.RemoveField(model_name="vote", name="block_hash"),
                migrations.RemoveField(model_name="vote", name="id"),
                migrations.RemoveField(model_name="vote", name="signature"),
                migrations.RemoveField(model_name="vote", name="timestamp"),
                migrations.RemoveField(model_name="vote", name="validator_index"),
                migrations.AddField(
                    model_name="vote",
                    name="block_tag",
                    field=models.IntegerField(
                        blank=True, help_text="First 4 bytes of the block hash; NULL: nil.", null=True
                    ),
                ),
                migrations.AddField(
                    model_name="vote",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "chain",
                        "height",
                        "round",
                        "type",
                        "validator",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                migrations.AddField(
                    model_name="vote",
                    name="skew",
                    field=models.SmallIntegerField(
                        default=0, help_text="The vote's own timestamp minus received_at, 10 ms units."
                    ),
                ),
                migrations.AlterField(
                    model_name="vote",
                    name="chain",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="consensus.chain",
                    ),
                ),
            ],
        ),
    ]
