"""The pipeline's health per chain, at a glance (`manage.py ctop_status`).

For each chain: which endpoint the subscriber is on, the latest height seen (Redis, written by
subscribe_events), stored (PostgreSQL, by stream_events) and analysed (by the analyzer), the stream's
backlog (entries not yet read by the consumer group, and read but unacknowledged), dead letters,
open gaps and open alerts. Each stage lagging the one before it says where the pipeline is stuck.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime

import redis
from django.db.models import Count
from django.utils import timezone

from common.text import one_line
from consensus.models import Chain, ChainStatus, DeadLetter, FeedState
from consensus.selectors import latest_heights, open_gap_counts
from consensus.streams import decode_last_height, group_info, last_height_key, stream_key

from .rules import stale_after
from .selectors import latest_verdicts, open_alert_counts


@dataclass
class ChainHealth:
    chain: str
    enabled: bool
    state: str  # what the subscriber last reported: connected, disconnected, all_failing, or "no report"
    endpoint: str
    reported_age: float | None  # seconds since the subscriber's last report
    seen: int | None  # latest height the subscriber delivered to Redis
    stored: int | None  # latest height with a stored round
    analysed: int | None  # latest judged height
    stream_length: int | None
    unread: int | None  # entries the consumer group has not read yet
    pending: int | None  # read but not acknowledged (a consumer is working on them, or died holding them)
    dead_letters: int
    open_gaps: int
    alerts: dict[str, int] = field(default_factory=dict)  # severity label -> open alerts
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


def _stream(client: redis.Redis, chain: str) -> tuple[int | None, int | None, int | None]:
    key = stream_key(chain)
    length = client.xlen(key)  # 0 for no stream yet
    group = group_info(client, key)
    if group is None:
        return length, None, None
    return length, group.unread, group.pending


def collect(
    client: redis.Redis | None, *, now: datetime | None = None, lag_heights: int = 5, analyzer_stale: float = 90.0
) -> list[ChainHealth]:
    now = now or timezone.now()
    statuses = {s.chain_id: s for s in ChainStatus.objects.all()}
    chains = list(Chain.objects.order_by("name"))
    ids = [c.pk for c in chains]
    # Index walks per chain (one round trip each), never a scan of the event tables.
    stored = {chain_id: latest.height for chain_id, latest in latest_heights(ids).items()}
    analysed = latest_verdicts(ids)
    dead = dict(DeadLetter.objects.values("chain_id").annotate(n=Count("id")).values_list("chain_id", "n"))
    gaps = open_gap_counts()
    alerts = {
        chain_id: Counter({severity.label: n for severity, n in counts.items()})
        for chain_id, counts in open_alert_counts().items()
    }
    out = []
    for chain in chains:
        status = statuses.get(chain.pk)
        seen = length = unread = pending = None
        redis_error = ""
        if client is not None:
            try:
                record = decode_last_height(client.get(last_height_key(chain.name)))
                seen = record[0] if record else None
                length, unread, pending = _stream(client, chain.name)
            except redis.RedisError as exc:
                redis_error = f"Redis: {one_line(exc, 200)}"
        h = ChainHealth(
            chain=chain.name,
            enabled=chain.enabled,
            state=status.state if status else "no report",
            endpoint=status.endpoint if status else "",
            reported_age=(now - status.updated_at).total_seconds() if status else None,
            seen=seen,
            stored=stored.get(chain.pk),
            analysed=analysed[chain.pk][0] if chain.pk in analysed else None,
            stream_length=length,
            unread=unread,
            pending=pending,
            dead_letters=dead.get(chain.pk, 0),
            open_gaps=gaps[chain.pk],
            alerts=dict(alerts.get(chain.pk, {})),
        )
        if redis_error:
            h.problems.append(redis_error)
        if chain.enabled:
            if status is None:
                h.problems.append("no subscriber has reported on this chain (is subscribe_events running?)")
            elif h.reported_age is not None and h.reported_age > stale_after(status):
                h.state = f"stale ({int(h.reported_age)}s)"
                h.problems.append(f"the subscriber's last report is {int(h.reported_age)}s old: {status.state} then")
            elif h.state != FeedState.CONNECTED:
                reason = f" ({one_line(status.reason, 80)})" if status.reason else ""
                h.problems.append(f"subscriber {h.state}{reason}")
            if h.seen is not None and (h.stored or 0) < h.seen - lag_heights:
                h.problems.append(f"stream_events behind: stored {h.stored}, seen {h.seen}")
            # The analyzer works in ticks (10-30 s), so trailing by a tick's heights is normal: it is
            # behind when it trails and has not recorded a verdict for `analyzer_stale` seconds.
            judged_at = analysed[chain.pk][1] if chain.pk in analysed else None
            idle = (now - judged_at).total_seconds() if judged_at else None
            if (
                h.stored is not None
                and (h.analysed or 0) < h.stored - lag_heights - 2
                and (idle is None or idle > analyzer_stale)
            ):
                since = f", last verdict {int(idle)}s ago" if idle is not None else ", no verdict yet"
                h.problems.append(f"analyzer behind: analysed {h.analysed}, stored {h.stored}{since}")
            if h.alerts.get("critical"):
                h.problems.append(f"{h.alerts['critical']} critical alert(s) open")
        out.append(h)
    return out


def as_dict(h: ChainHealth) -> dict:
    return asdict(h) | {"healthy": h.healthy}
