# Validator identity moves from the validators app to the consensus record (issue 18): every vote
# names a validator, and stream_events creates unknown ones, so consensus owns the model. The table
# keeps its name (validators_validator) and its rows: only Django's idea of the owner changes, so
# every operation here is state-only and the database is untouched.

import django.db.models.deletion
from django.db import migrations, models


def fk(**kw):
    return models.ForeignKey(
        to="consensus.validator", db_index=False, on_delete=django.db.models.deletion.PROTECT, **kw
    )


def move_content_type(apps, schema_editor, *, old: str = "validators", new: str = "consensus") -> None:
    """The admin's history and the staff's permissions on validators hang on the model's content
    type: move it with the model, so nobody loses access and nothing is left stale. (A new
    database has none yet: content types are created after migrating.)"""
    content_type = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
    if content_type.filter(app_label=new, model="validator").exists():
        return
    content_type.filter(app_label=old, model="validator").update(app_label=new)


def move_content_type_back(apps, schema_editor) -> None:
    move_content_type(apps, schema_editor, old="consensus", new="validators")


class Migration(migrations.Migration):
    dependencies = [
        ("consensus", "0004_deadletter_length_status_since"),
        ("validators", "0002_set_index_state"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(move_content_type, move_content_type_back),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Validator",
                    fields=[
                        ("id", models.AutoField(primary_key=True, serialize=False)),
                        (
                            "address",
                            models.CharField(help_text="Consensus address, uppercase hex (20 bytes).", max_length=40),
                        ),
                        ("pub_key_type", models.CharField(blank=True, max_length=64)),
                        (
                            "pub_key",
                            models.CharField(
                                blank=True, help_text="Base64, as /validators reports it.", max_length=128
                            ),
                        ),
                        ("moniker", models.CharField(blank=True, max_length=128)),
                        ("operator_address", models.CharField(blank=True, max_length=128)),
                        ("first_seen_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "chain",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="validators",
                                to="consensus.chain",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "validators_validator",
                        "ordering": ["chain", "address"],
                        "constraints": [
                            models.UniqueConstraint(fields=("chain", "address"), name="validator_natural_key")
                        ],
                    },
                ),
                migrations.AlterField(
                    model_name="commitsignature",
                    name="validator",
                    field=fk(
                        blank=True,
                        null=True,
                        related_name="+",
                        help_text="Empty for absent slots until resolved through the set of that height.",
                    ),
                ),
                migrations.AlterField(
                    model_name="round",
                    name="proposer",
                    field=fk(blank=True, null=True, related_name="+"),
                ),
                migrations.AlterField(
                    model_name="vote",
                    name="validator",
                    field=fk(related_name="votes"),
                ),
            ],
            database_operations=[],
        ),
    ]
