# Validator now lives in consensus (same table, same rows): set memberships point there, and the
# model leaves this app's state. State-only: the database is untouched. It runs after every app
# that pointed at validators.Validator has been pointed at consensus.Validator.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("validators", "0002_set_index_state"),
        ("consensus", "0005_validator"),
        ("analysis", "0007_validator_in_consensus"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="setmembership",
                    name="validator",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to="consensus.validator",
                    ),
                ),
                migrations.DeleteModel(name="Validator"),
            ],
            database_operations=[],
        ),
    ]
