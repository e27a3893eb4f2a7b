"""What the analyzer needs to know about every chain at the start of a tick, read for all chains
at once (a handful of queries per tick instead of a handful per chain): the open alerts, the rounds
of the latest height seen, the subscriber's last report and the latest judged height."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from consensus.models import Chain, ChainStatus
from consensus.selectors import LatestHeight, latest_heights

from .lifecycle import OpenAlerts
from .models import Alert
from .selectors import latest_verdicts


@dataclass
class ChainState:
    open_alerts: OpenAlerts = field(default_factory=dict)
    latest: LatestHeight | None = None  # the latest stored height
    status: ChainStatus | None = None
    latest_judged: int | None = None

    @property
    def height_started(self) -> datetime | None:
        """When the latest height began (its first round)."""
        return self.latest.started_at if self.latest else None


def load_states(chains: list[Chain]) -> dict[int, ChainState]:
    ids = [c.pk for c in chains]
    states = {i: ChainState() for i in ids}
    for chain_id, latest in latest_heights(ids).items():
        states[chain_id].latest = latest
    for chain_id, (height, _) in latest_verdicts(ids).items():
        states[chain_id].latest_judged = height
    for alert in Alert.objects.filter(chain_id__in=ids, is_open=True):
        states[alert.chain_id].open_alerts[(alert.kind, alert.validator_id)] = alert
    for status in ChainStatus.objects.filter(chain_id__in=ids):
        states[status.chain_id].status = status
    return states
