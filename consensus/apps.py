from django.apps import AppConfig


class ConsensusConfig(AppConfig):
    """Events in: chains, their endpoints, and the consensus events read off their websockets."""

    name = "consensus"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the chain purge
