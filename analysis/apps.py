from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    """Verdicts, alerts and the team's pages."""

    name = "analysis"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the sign-out receiver
