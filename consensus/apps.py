from django.apps import AppConfig


class ConsensusConfig(AppConfig):
    """Events in: chains, their endpoints, and the consensus events read off their websockets."""

    name = "consensus"
    default_auto_field = "django.db.models.BigAutoField"
