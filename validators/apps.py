from django.apps import AppConfig


class ValidatorsConfig(AppConfig):
    """Validator sets: who is in the active set of each chain at each height."""

    name = "validators"
    default_auto_field = "django.db.models.BigAutoField"
