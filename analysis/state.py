"""What the analyzer needs to know about every chain at the start of a tick, read for all chains
at once (a handful of queries per tick instead of a handful per chain): the open alerts, the rounds
of the latest height seen, the subscriber's last report and the latest judged height."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

from consensus.models import Chain, ChainStatus

from .lifecycle import OpenAlerts
from .models import Alert

# (height, round, started_at) of the rounds of the latest height, newest round first
LatestRounds = list[tuple[int, int, datetime]]


@dataclass
class ChainState:
    open_alerts: OpenAlerts = field(default_factory=dict)
    rounds: LatestRounds = field(default_factory=list)
    status: ChainStatus | None = None
    latest_judged: int | None = None

    @property
    def height_started(self) -> datetime | None:
        """When the latest height began (its first round)."""
        return self.rounds[-1][2] if self.rounds else None


def load_states(chains: list[Chain]) -> dict[int, ChainState]:
    ids = [c.pk for c in chains]
    states = {i: ChainState() for i in ids}
    with connection.cursor() as cur:
        # Per chain, two index walks on the (chain, height, round) natural key: the latest height,
        # then its rounds. A LATERAL join does them for every chain in one round trip.
        cur.execute(
            "SELECT c.id, top.height, r.round, r.started_at FROM unnest(%s::smallint[]) c(id)"
            " CROSS JOIN LATERAL (SELECT height FROM consensus_round WHERE chain_id = c.id"
            "   ORDER BY height DESC LIMIT 1) top"
            " CROSS JOIN LATERAL (SELECT round, started_at FROM consensus_round WHERE chain_id = c.id"
            "   AND height = top.height) r"
            " ORDER BY c.id, r.round DESC",
            [ids],
        )
        for chain_id, height, round_, started in cur.fetchall():
            states[chain_id].rounds.append((height, round_, started))
        cur.execute(
            "SELECT c.id, (SELECT height FROM analysis_heightverdict WHERE chain_id = c.id"
            " ORDER BY height DESC LIMIT 1) FROM unnest(%s::smallint[]) c(id)",
            [ids],
        )
        for chain_id, height in cur.fetchall():
            states[chain_id].latest_judged = height
    for alert in Alert.objects.filter(chain_id__in=ids, is_open=True):
        states[alert.chain_id].open_alerts[(alert.kind, alert.validator_id)] = alert
    for status in ChainStatus.objects.filter(chain_id__in=ids):
        states[status.chain_id].status = status
    return states
