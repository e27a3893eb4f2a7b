"""Consensus metrics for Prometheus, computed from the database when scraped.

Every family is read with bounded queries: the latest stored height per chain (index walks), the
set and the prevotes of the round in progress (one height), and the verdicts of the last
CTOP_METRICS_WINDOW judged heights per chain (a range on the verdicts' natural key). So a scrape
costs the same whether a chain has a day of history or a year.

Per-validator misses are gauges over that window ("missed in the last N heights"), not counters:
ctop judges each height once, in a process other than the web one, and may judge heights late
(gap heights, commits that come later). A window read from the verdicts is exact, survives
restarts, and needs no per-process state; rate() over a counter would have none of that.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from consensus.models import Chain, VoteType
from consensus.selectors import latest_heights
from validators.selectors import latest_known_powers

from .models import Alert, Severity
from .selectors import latest_verdicts


class ConsensusCollector(Collector):
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        self.window = max(1, settings.CTOP["METRICS_WINDOW"])

    def collect(self) -> Iterator[Metric]:
        chains = list(Chain.objects.filter(enabled=True).order_by("name"))
        latest = latest_heights([c.pk for c in chains])
        # The active set of each chain's latest height (one GiST query for all), read once for both.
        sets = latest_known_powers({c.pk: latest[c.pk].height for c in chains if c.pk in latest})
        yield from self._chains(chains, latest, sets)
        yield from self._validators(chains, sets)
        yield self._alerts({c.pk: c.name for c in chains})

    # --- per chain ---

    def _chains(self, chains: list[Chain], latest: dict, sets: dict) -> Iterator[Metric]:
        height = GaugeMetricFamily("ctop_chain_height", "Latest height ctop stored a round of.", labels=["chain"])
        round_ = GaugeMetricFamily("ctop_chain_round", "Newest round seen at the latest height.", labels=["chain"])
        step = GaugeMetricFamily(
            "ctop_chain_step", "Furthest step of that round (CometBFT's RoundStepType number).", labels=["chain"]
        )
        age = GaugeMetricFamily(
            "ctop_chain_height_age_seconds", "Seconds since the latest height began.", labels=["chain"]
        )
        missing = GaugeMetricFamily(
            "ctop_chain_missing_prevote_power_ratio",
            "Share of the active set's voting power without a prevote in the round in progress (0-1).",
            labels=["chain"],
        )
        rounds = GaugeMetricFamily(
            "ctop_chain_rounds_per_height",
            "Average rounds per height over the recent judged heights (1 is a healthy chain).",
            labels=["chain"],
        )
        prevoted = self._prevoters({c.pk: latest[c.pk] for c in chains if sets.get(c.pk) and c.pk in latest})
        for chain in chains:
            top = latest.get(chain.pk)
            if top is None:
                continue
            labels = [chain.name]
            height.add_metric(labels, top.height)
            round_.add_metric(labels, top.round)
            if top.step is not None:
                step.add_metric(labels, top.step)
            age.add_metric(labels, max((self.now - top.started_at).total_seconds(), 0.0))
            members = sets.get(chain.pk, {})
            total = sum(members.values())
            if total:
                voted = prevoted.get(chain.pk, set())
                absent = sum(power for vid, power in members.items() if vid not in voted)
                missing.add_metric(labels, absent / total)
        with connection.cursor() as cur:
            cur.execute(
                "SELECT c.id, avg(v.rounds) FROM unnest(%s::smallint[]) c(id) CROSS JOIN LATERAL"
                " (SELECT rounds FROM analysis_heightverdict WHERE chain_id = c.id AND NOT unknown"
                "  ORDER BY height DESC LIMIT %s) v GROUP BY c.id",
                [[c.pk for c in chains], self.window],
            )
            by_id = {c.pk: c.name for c in chains}
            for chain_id, avg in cur.fetchall():
                rounds.add_metric([by_id[chain_id]], float(avg))
        yield from (height, round_, step, age, missing, rounds)

    @staticmethod
    def _prevoters(tops: dict) -> dict[int, set[int]]:
        """Who prevoted in each chain's round in progress: one round trip, a UNION ALL of one
        subquery per chain with its height as a constant, so the planner opens one vote partition
        per chain (a join on the heights would be planned against every partition of every chain)."""
        if not tops:
            return {}
        parts, params = [], []
        for chain_id, top in tops.items():
            parts.append(
                "(SELECT %s, validator_id FROM consensus_vote WHERE chain_id = %s AND height = %s AND round = %s"
                " AND type = %s)"
            )
            params += [chain_id, chain_id, top.height, top.round, VoteType.PREVOTE]
        voted: dict[int, set[int]] = {}
        with connection.cursor() as cur:
            cur.execute(" UNION ALL ".join(parts), params)
            for chain_id, vid in cur.fetchall():
                voted.setdefault(chain_id, set()).add(vid)
        return voted

    # --- per validator ---

    def _validators(self, chains: list[Chain], sets: dict) -> Iterator[Metric]:
        labels = ["chain", "validator"]
        power = GaugeMetricFamily("ctop_validator_voting_power", "Voting power in the active set.", labels=labels)
        in_set = GaugeMetricFamily(
            "ctop_validator_in_active_set", "1 if in the active set at the latest height, else 0.", labels=labels
        )
        missed_pre = GaugeMetricFamily(
            "ctop_validator_missed_prevote_heights",
            "Heights of the chain's window (ctop_chain_window_heights) at which it missed a prevote in some round.",
            labels=labels,
        )
        missed_com = GaugeMetricFamily(
            "ctop_validator_missed_precommit_heights",
            "Heights of the chain's window at which it missed a precommit in some round.",
            labels=labels,
        )
        solo = GaugeMetricFamily(
            "ctop_validator_solo_missed_heights",
            "Heights of the window it missed while fewer than a third of the validators (by count, against the"
            " latest set's size) missed.",
            labels=labels,
        )
        info = InfoMetricFamily("ctop_validator", "Who a validator is (join on chain and validator).", labels=labels)
        names = {c.pk: c.name for c in chains}
        judged = latest_verdicts(list(names))
        ids = [c for c in names if c in judged]
        # Every chain's window in one query, reading only the verdicts that are misses (a validator
        # that signed everything has no row here: its gauges are 0).
        misses: dict[tuple[int, int], tuple[int, int, int]] = {}
        with connection.cursor() as cur:
            cur.execute(
                "SELECT v.chain_id, v.validator_id, count(*) FILTER (WHERE v.prevotes LIKE '%%M%%'),"
                " count(*) FILTER (WHERE v.precommits LIKE '%%M%%'),"
                " count(*) FILTER (WHERE h.missed_validators * 3 < c.members)"
                " FROM unnest(%s::smallint[], %s::bigint[], %s::int[]) c(id, low, members)"
                " JOIN analysis_heightverdict h ON h.chain_id = c.id AND h.height > c.low AND NOT h.unknown"
                # Only heights with a miss are looked into: the others' 150 verdict rows are skipped.
                " AND h.missed_validators > 0"
                " JOIN analysis_validatorverdict v ON v.chain_id = c.id AND v.height = h.height AND v.missed"
                " GROUP BY v.chain_id, v.validator_id",
                [ids, [judged[c][0] - self.window for c in ids], [len(sets.get(c, [])) for c in ids]],
            )
            for chain_id, vid, pre, com, alone in cur.fetchall():
                misses[(chain_id, vid)] = (pre, com, alone)
        series = {(c, vid) for c, members in sets.items() for vid in members} | set(misses)
        # Every validator of the watched chains: one index walk (an IN list of thousands of ids costs
        # PostgreSQL more to plan than to run: measured 87 ms for 3,000).
        with connection.cursor() as cur:
            cur.execute(
                "SELECT id, address, moniker FROM validators_validator WHERE chain_id = ANY(%s::smallint[])",
                [list(names)],
            )
            who = {pk: (address, moniker) for pk, address, moniker in cur.fetchall()}
        # The samples are made directly rather than through add_metric: ~18,000 of them at 20 chains
        # x 150 validators, and one labels dict shared by a validator's five gauges (the formatter
        # only reads it) halves the time spent building them (measured 45 -> 20 ms).
        info_name = info.name + "_info"
        for chain_id, vid in sorted(series):
            address, moniker = who[vid]
            labels = {"chain": names[chain_id], "validator": address}
            member = vid in sets.get(chain_id, {})
            in_set.samples.append(Sample(in_set.name, labels, 1 if member else 0))
            power.samples.append(Sample(power.name, labels, sets[chain_id][vid] if member else 0))
            info.samples.append(Sample(info_name, {**labels, "moniker": moniker}, 1))
            if chain_id in judged:
                pre, com, alone = misses.get((chain_id, vid), (0, 0, 0))
                missed_pre.samples.append(Sample(missed_pre.name, labels, pre))
                missed_com.samples.append(Sample(missed_com.name, labels, com))
                solo.samples.append(Sample(solo.name, labels, alone))
        yield from (power, in_set, missed_pre, missed_com, solo, info)
        yield from self._windows(ids, judged, names)

    def _windows(self, ids: list[int], judged: dict, names: dict[int, str]) -> Iterator[Metric]:
        """Per chain, the latest judged height and how many heights the window really holds (fewer
        than N on a young chain; gap heights, which ctop did not see whole, are not counted)."""
        latest = GaugeMetricFamily(
            "ctop_chain_latest_judged_height", "The latest height the analyzer judged.", labels=["chain"]
        )
        window = GaugeMetricFamily(
            "ctop_chain_window_heights",
            "Judged heights (gap heights excluded) the validators' missed-heights gauges count over.",
            labels=["chain"],
        )
        with connection.cursor() as cur:
            cur.execute(
                "SELECT c.id, count(h.height) FROM unnest(%s::smallint[], %s::bigint[]) c(id, low)"
                " LEFT JOIN analysis_heightverdict h ON h.chain_id = c.id AND h.height > c.low AND NOT h.unknown"
                " GROUP BY c.id",
                [ids, [judged[c][0] - self.window for c in ids]],
            )
            counts = dict(cur.fetchall())
        for chain_id in ids:
            latest.add_metric([names[chain_id]], judged[chain_id][0])
            window.add_metric([names[chain_id]], counts.get(chain_id, 0))
        yield from (latest, window)

    # --- alerts ---

    def _alerts(self, names: dict[int, str]) -> Metric:
        family = GaugeMetricFamily(
            "ctop_alerts_open", "Open alerts by kind and severity.", labels=["chain", "kind", "severity"]
        )
        counts: dict[tuple[str, str, str], int] = {}
        for chain_id, kind, severity in Alert.objects.filter(is_open=True).values_list("chain_id", "kind", "severity"):
            if chain_id in names:
                key = (names[chain_id], kind, Severity(severity).label)
                counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            family.add_metric(list(key), n)
        return family
