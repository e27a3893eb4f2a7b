"""MissingVoteAnalyzer: judge every completed height once, then evaluate the alert rules."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from django.utils import timezone

from consensus.models import Chain, Round
from validators.indexer import ensure_set_at
from validators.models import SetIndexState, SetMembership

from .alerts import evaluate
from .commits import CommitFetcher, CommitLookup
from .judge import Judgement, judge_height, judge_heights, record_all
from .models import AlertSettings
from .notify import send_due
from .state import ChainState, load_states

log = logging.getLogger("ctop.analyzer")


class MissingVoteAnalyzer:
    def __init__(
        self,
        chains: list[Chain],
        *,
        max_heights: int = 500,
        backlog: int = 100,
        fetch_sets: bool = True,
        fetch_commits: bool = True,
        commit_wait: float = 30.0,
    ) -> None:
        self.chains = chains
        self.max_heights = max_heights  # per chain per tick, so one chain's backlog never starves the rest
        self.backlog = backlog  # on a first run, judge at most this many recent heights
        self.fetch_sets = fetch_sets  # ask the indexer for sets of heights it has not covered
        self.fetch_commits = fetch_commits  # cross-check missing precommits against /commit
        # How long to wait for height+1 to be committed (its commit carries late precommits) before
        # judging with the events alone: a halted chain must still be judged.
        self.commit_wait = commit_wait

    def ready_heights(
        self, chain: Chain, settings: AlertSettings | None = None, state: ChainState | None = None
    ) -> list[int]:
        """Completed heights not judged yet (the next height has started and late votes had their
        grace), oldest first. Heights ctop saw nothing of (no round at all: a long outage) are
        skipped, so a gap of millions of heights costs one query, not millions of verdicts."""
        settings = settings or AlertSettings.for_chain(chain)
        state = state or load_states([chain])[chain.pk]
        started = state.height_started
        if started is None:
            return []
        height = state.rounds[0][0]
        last_ready = height - 1 if started <= timezone.now() - timedelta(seconds=settings.grace_seconds) else height - 2
        rounds = Round.objects.filter(chain=chain)
        judged = state.latest_judged
        if judged is None:
            first = rounds.order_by("height").values_list("height", flat=True).first()
            start = max(first + 1, last_ready - self.backlog + 1)  # the first height seen may be partial
            # Nothing before the first recorded set can be judged (nobody knows who was in it).
            earliest_set = SetMembership.objects.filter(chain=chain).order_by("heights").first()
            if earliest_set is not None:
                start = max(start, earliest_set.heights.lower)
        else:
            start = judged + 1
        # The (chain, height, round) natural-key index serves this walk.
        heights = (
            rounds.filter(height__gte=start, height__lte=last_ready)
            .order_by("height")
            .values_list("height", flat=True)
            .distinct()
        )
        return list(heights[: self.max_heights])

    def _overdue(self, chain: Chain, height: int) -> bool:
        started = (
            Round.objects.filter(chain=chain, height=height + 1)
            .order_by("round")
            .values_list("started_at", flat=True)
            .first()
        )
        return started is None or started <= timezone.now() - timedelta(seconds=self.commit_wait)

    def judge(self, chain: Chain, heights: list[int]) -> list[Judgement]:
        """Judgements for the leading run of `heights` that can be judged now; stops at the first
        height whose set is unknown or whose canonical commit is worth waiting for."""
        if heights and self.fetch_sets and not ensure_set_at(chain, heights[-1]):
            # The indexer could not reach the newest height: judge what it has verified, if anything.
            state = SetIndexState.objects.filter(chain=chain).first()
            verified = state.verified_height if state else 0
            if heights[0] > verified:
                log.warning("%s h=%d: validator set unknown yet; judging later", chain.name, heights[0])
            heights = [h for h in heights if h <= verified]
        with contextlib.closing(CommitFetcher(chain)) as commits:
            return self._judge_run(chain, heights, commits)

    def _judge_run(self, chain: Chain, heights: list[int], commits: CommitFetcher) -> list[Judgement]:
        out: list[Judgement] = []
        first_set = None
        for height, j in zip(heights, judge_heights(chain, heights), strict=True):
            if j is None:
                if first_set is None:
                    earliest = SetMembership.objects.filter(chain=chain).order_by("heights").first()
                    first_set = earliest.heights.lower if earliest else 0
                if height < first_set:
                    continue  # before the first recorded set nobody knows who was in it: never judged
                log.warning("%s h=%d: no validator set recorded; run index_validators", chain.name, height)
                break
            if self.fetch_commits and j.missing_precommits and j.commit_round is None and not j.unknown:
                lookup = commits.fetch(height)
                if lookup is CommitLookup.STORED:
                    j = judge_height(chain, height) or j
                elif lookup is CommitLookup.NOT_YET and not self._overdue(chain, height):
                    break  # the next tick will find the canonical commit
            out.append(j)
        return out

    def run_once(self) -> int:
        judged = 0
        settings = {s.chain_id: s for s in AlertSettings.objects.filter(chain__in=self.chains)}
        states = load_states(self.chains)  # a few queries for every chain at once
        judgements: dict[int, list[Judgement]] = {}
        for chain in self.chains:
            chain_settings = settings.get(chain.pk) or AlertSettings(chain=chain)
            judgements[chain.pk] = self.judge(chain, self.ready_heights(chain, chain_settings, states[chain.pk]))
        recorded = record_all(judgements)  # every chain's new verdicts in one transaction
        for chain in self.chains:
            state, mine = states[chain.pk], set(recorded.get(chain.pk, ()))
            judged += len(mine)
            if mine:
                state.latest_judged = max(mine | {state.latest_judged or 0})
            for j in judgements[chain.pk]:
                if j.height in mine and j.missed and not j.unknown:
                    log.info("%s h=%d: %d validator(s) missed votes", chain.name, j.height, len(j.missed))
            evaluate(chain, timezone.now(), settings.get(chain.pk) or AlertSettings(chain=chain), state)
        send_due()
        return judged
