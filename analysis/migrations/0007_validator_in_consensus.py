# The verdicts and alerts point at consensus.Validator (moved from the validators app, same table):
# state-only, the database is untouched.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analysis", "0006_verdict_rounds"),
        ("consensus", "0005_validator"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="roundverdict",
                    name="proposer",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consensus.validator",
                    ),
                ),
                migrations.AlterField(
                    model_name="validatorverdict",
                    name="validator",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="verdicts",
                        to="consensus.validator",
                    ),
                ),
                migrations.AlterField(
                    model_name="alert",
                    name="validator",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="alerts",
                        to="consensus.validator",
                    ),
                ),
            ],
            database_operations=[],
        ),
    ]
