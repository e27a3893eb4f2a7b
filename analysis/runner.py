"""MissingVoteAnalyzer: judge every completed height once, then evaluate the alert rules.

A tick reads the database only: questions to nodes go through RemoteLookups (off the judging
path, one job per chain at a time), notifications through the Notifier (its own threads). Each
chain's work is its own unit: an unexpected error in one is logged with the chain's name and the
others go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone
from prometheus_client.core import Metric

from common import metrics
from common.text import first_line
from consensus.models import Chain, CommitSignature, Gap, Round, RoundStep, Step
from validators.models import SetIndexState
from validators.selectors import first_recorded_height

from . import blocks, notify
from .alerts import evaluate
from .judge import Judgement, judge_height, judge_heights, record_all
from .lookups import CommitLookup, RemoteLookups
from .models import AlertSettings, ChannelKind
from .performance import EVERY
from .state import ChainState, load_states

log = logging.getLogger("ctop.analyzer")

BACKFILL_WAIT = 300.0  # seconds a gap's heights wait for its backfill before being judged without it
# A height answered "not canonical yet" is asked again once height+1 is committed (its block holds
# the canonical commit of height): ctop saw its Commit step, or height+2 start. At most every
# NOT_YET_SOON; and every NOT_YET_BACKOFF whatever ctop saw (a node ahead of the events).
NOT_YET_SOON = 0.3
NOT_YET_BACKOFF = 2.0
# Block metas (analysis.blocks) of judged heights: asked for once a page of them (BLOCKS_PAGE, one
# /blockchain call) is waiting or BLOCKS_EVERY seconds after the last ask, at most 200 heights a
# job, BLOCKS_RETRY after a failure, and no further back than BLOCKS_BACKLOG heights. They feed
# proposer statistics, not verdicts, so nothing waits for them; and a chain's endpoint gets one job
# (ten calls at most) every BLOCKS_MIN_GAP seconds at most, usually one call a minute.
BLOCKS_PAGE = 20
BLOCKS_EVERY = 60.0
BLOCKS_MIN_GAP = 5.0  # seconds between two fetches of a chain, backlog or not
BLOCKS_RETRY = 60.0
BLOCKS_BACKLOG = 1_000
BLOCKS_PER_JOB = 200


class MissingVoteAnalyzer:
    def __init__(
        self,
        chains: list[Chain] | Callable[[], list[Chain]],
        *,
        max_heights: int = 500,
        backlog: int = 100,
        fetch_sets: bool = True,
        fetch_commits: bool = True,
        fetch_blocks: bool | None = None,
        commit_wait: float = 30.0,
        lookups: RemoteLookups | None = None,
        lookup_workers: int = 4,
    ) -> None:
        self._chains = chains
        self.max_heights = max_heights  # per chain per tick, so one chain's backlog never starves the rest
        self.backlog = backlog  # on a first run, judge at most this many recent heights
        self.fetch_sets = fetch_sets  # ask for sets of heights the indexer has not covered
        self.fetch_commits = fetch_commits  # cross-check missing precommits against the canonical commit
        # Block metas (transactions, block time) of judged heights; by default asked wherever commits
        # are (both are questions to nodes: a run told not to ask nodes asks neither).
        self.fetch_blocks = fetch_commits if fetch_blocks is None else fetch_blocks
        self._blocks_asked: dict[int, float] = {}  # chain id -> when its last block fetch was asked for
        # How long to wait for height+1 to be committed (its commit carries late precommits) before
        # judging with the events alone: a halted chain must still be judged.
        self.commit_wait = commit_wait
        self.wake = threading.Event()  # set when a look-up came back: worth a tick now
        self.started_at = timezone.now()
        # lookup_workers=0: questions to nodes are asked inline (one-shot runs, tests in a transaction).
        self.lookups = lookups or RemoteLookups(workers=lookup_workers, on_done=self.wake.set)
        self._performance_at: dict[int, int] = {}  # chain id -> latest judged height at its last run
        self.tick_durations = metrics.Durations("ctop_analyzer_tick_seconds")
        self.judged_total = 0

    @property
    def chains(self) -> list[Chain]:
        return self._chains() if callable(self._chains) else self._chains

    def ready_heights(self, chain: Chain, settings: AlertSettings, state: ChainState) -> tuple[list[int], int | None]:
        """Completed heights not judged yet (the next height has started), oldest first: every height
        ctop saw a round of, and every height whose canonical commit the backfill stored (ctop was
        not listening then). Heights with neither (a long outage beyond the backfill) are skipped, so
        a gap of millions costs one query. Also returns the newest of them if it is still within its
        grace for late votes (None if not): it is judged early only on the chain's canonical commit."""
        started = state.height_started
        if started is None:
            return [], None
        height = state.latest.height
        last_ready = height - 1
        in_grace = last_ready if started > timezone.now() - timedelta(seconds=settings.grace_seconds) else None
        judged = state.latest_judged
        if judged is None:
            first = Round.objects.filter(chain=chain).order_by("height").values_list("height", flat=True).first()
            start = max((first or height) + 1, last_ready - self.backlog + 1)  # the first height seen may be partial
            # Nothing before the first recorded set can be judged (nobody knows who was in it).
            start = max(start, first_recorded_height(chain.pk) or 0)
        else:
            start = judged + 1
        # A gap whose backfill is under way: its heights get the chain's commit soon; judging past
        # them now would leave them unjudged for good. So judging stops at the first height of such a
        # gap whose commit has not arrived yet. Waited for a while, not forever (a node that pruned
        # those heights never answers).
        for gap_from, gap_to in Gap.objects.filter(
            chain=chain,
            backfilled_at__isnull=True,
            to_height__gte=start,
            from_height__lte=last_ready,
            detected_at__gte=timezone.now() - timedelta(seconds=BACKFILL_WAIT),
        ).values_list("from_height", "to_height"):
            # Only max_heights are judged per tick: the look-up stays that small whatever the gap.
            lo, hi = max(gap_from, start), min(gap_to, last_ready, start + self.max_heights - 1)
            filled = set(
                CommitSignature.objects.filter(chain=chain, height__gte=lo, height__lte=hi)
                .values_list("height", flat=True)
                .distinct()
            )
            missing = next((h for h in range(lo, hi + 1) if h not in filled), None)
            if missing is not None:
                last_ready = min(last_ready, missing - 1)
        if in_grace is not None and in_grace > last_ready:
            in_grace = None
        if start > last_ready:
            return [], None
        with connection.cursor() as cur:
            # Two walks of natural-key indexes, bounded by the window and max_heights.
            cur.execute(
                "(SELECT DISTINCT height FROM consensus_round WHERE chain_id = %s AND height BETWEEN %s AND %s"
                " ORDER BY height LIMIT %s) UNION (SELECT DISTINCT height FROM consensus_commitsignature"
                " WHERE chain_id = %s AND height BETWEEN %s AND %s ORDER BY height LIMIT %s) ORDER BY 1 LIMIT %s",
                [chain.pk, start, last_ready, self.max_heights] * 2 + [self.max_heights],
            )
            return [h for (h,) in cur.fetchall()], in_grace

    def _overdue(self, chain: Chain, height: int) -> bool:
        started = (
            Round.objects.filter(chain=chain, height=height + 1)
            .order_by("round")
            .values_list("started_at", flat=True)
            .first()
        )
        return started is None or started <= timezone.now() - timedelta(seconds=self.commit_wait)

    def judge(
        self, chain: Chain, heights: list[int], in_grace: int | None = None, tip: int | None = None
    ) -> list[Judgement]:
        """Judgements for the leading run of `heights` that can be judged now; stops at the first
        height whose set is unknown or whose canonical commit is worth waiting for.

        in_grace: a height whose late votes may still arrive. It is judged now only if a precommit is
        missing and the chain's canonical commit settles it (asked for at once): a validator that
        stopped is then seen one grace period sooner, the commit being the chain's final word.
        tip: the newest height ctop saw start (the canonical commit of h exists once h+2 started)."""
        unverified: list[int] = []
        if heights and self.fetch_sets:
            state = SetIndexState.objects.filter(chain=chain).first()
            verified = state.verified_height if state else 0
            if heights[-1] > verified:
                self.lookups.ask_set(chain)  # the indexer has not reached them: index now, judge later
                if heights[0] > verified:
                    log.info("%s h=%d: validator set not indexed yet; judging later", chain.name, heights[0])
                unverified = [h for h in heights if h > verified]
                heights = [h for h in heights if h <= verified]
        out: list[Judgement] = []
        wanted: list[int] = []  # heights whose canonical commit to ask for (one job for the run)
        waiting: list[tuple[int, Judgement | None]] = []  # past a height that waits: only looked at for `wanted`
        first_set = None
        for height, j in zip(heights, judge_heights(chain, heights), strict=True):
            if waiting:
                waiting.append((height, j))
                continue
            if j is None:
                if first_set is None:
                    first_set = first_recorded_height(chain.pk) or 0
                if height < first_set:
                    continue  # before the first recorded set nobody knows who was in it: never judged
                log.warning("%s h=%d: no validator set recorded; run index_validators", chain.name, height)
                break
            if height == in_grace and (not j.missing_precommits or not self.fetch_commits):
                waiting.append((height, None))  # nothing the commit could settle: late votes get their grace
                continue
            if self.fetch_commits and self._needs_commit(j):
                answer = self.lookups.commit(chain, height)
                if answer is CommitLookup.STORED:
                    j = judge_height(chain, height) or j
                elif answer is None:
                    # Never asked: always worth one question (the answer wakes the analyzer at once).
                    wanted.append(height)
                    waiting.append((height, None))
                    continue
                elif answer is CommitLookup.NOT_YET or answer is CommitLookup.PENDING:
                    if answer is CommitLookup.NOT_YET and self._ask_again(chain, height, tip):
                        wanted.append(height)
                    if not self._overdue(chain, height) or height == in_grace:
                        waiting.append((height, None))  # a later tick judges it, with the canonical commit
                        continue
                    # Overdue (a halt, or an endpoint too slow to answer): judged with what was seen.
                elif height == in_grace:
                    waiting.append((height, None))  # no canonical commit to settle it early: it gets its grace
                    continue
            self.lookups.forget(chain, height)
            out.append(j)
        if self.fetch_commits:
            # Heights waiting behind another, or for their set (being read now, judged with the set
            # in force so far, which is theirs unless it changes right now): their canonical commits
            # are asked for meanwhile, so they are ready when their turn comes.
            later = waiting[1:] + list(zip(unverified, judge_heights(chain, unverified), strict=True))
            for height, j in later:
                if len(wanted) >= 50:
                    break
                if (
                    j is not None
                    and self._needs_commit(j)
                    and self.lookups.commit(chain, height, take=False) in (None, CommitLookup.NOT_YET)
                    and self._ask_again(chain, height, tip)
                ):
                    wanted.append(height)
        self.lookups.ask_commits(chain, wanted)
        return out

    @staticmethod
    def _needs_commit(j: Judgement) -> bool:
        """A precommit ctop did not see, at a height whose commit it does not hold: the chain's
        canonical commit says whether it was missed or only never relayed."""
        return bool(j.missing_precommits) and j.commit_round is None and not j.unknown

    def _ask_again(self, chain: Chain, height: int, tip: int | None) -> bool:
        age = self.lookups.not_yet_age(chain, height)
        if age is None or age >= NOT_YET_BACKOFF:
            return True
        if age < NOT_YET_SOON or tip is None or tip < height + 1:
            return False
        return tip >= height + 2 or RoundStep.objects.filter(chain=chain, height=height + 1, step=Step.COMMIT).exists()

    def _judge_chain(self, chain: Chain, settings: AlertSettings, state: ChainState) -> list[Judgement]:
        heights, in_grace = self.ready_heights(chain, settings, state)
        return self.judge(chain, heights, in_grace, tip=state.latest.height if state.latest else None)

    def run_once(self) -> int:
        """One tick over every chain; returns the heights it recorded."""
        started = time.monotonic()
        try:
            judged = self._tick()
        finally:
            self.tick_durations.observe(time.monotonic() - started)
        self.judged_total += judged
        return judged

    def metrics(self) -> Iterator[Metric]:
        """Its ticks and the notifications sent, for --metrics-port (common.metrics.PIPELINE)."""
        judged = metrics.counter("ctop_analyzer_heights_judged")
        judged.add_metric([], self.judged_total)
        sent = metrics.counter("ctop_notifications")
        # Every kind and result from 0 on: a first failure is an increase Prometheus sees.
        counts = dict(notify.DELIVERIES)
        for kind in ChannelKind.values:
            for result in ("sent", "failed"):
                sent.add_metric([kind, result], counts.get((kind, result), 0))
        yield from (self.tick_durations.family(), judged, sent)

    def _tick(self) -> int:
        self.wake.clear()
        chains = self.chains
        if not chains:
            return 0
        settings = {s.chain_id: s for s in AlertSettings.objects.filter(chain__in=chains)}
        states = load_states(chains)  # a few queries for every chain at once
        judgements: dict[int, list[Judgement]] = {}
        for chain in chains:
            try:
                chain_settings = settings.get(chain.pk) or AlertSettings(chain=chain)
                judgements[chain.pk] = self._judge_chain(chain, chain_settings, states[chain.pk])
            except DatabaseError:
                raise  # the database itself: the command waits for it, for every chain alike
            except Exception:
                log.exception("%s: judging failed; the other chains go on", chain.name)
        recorded = self._record(judgements)
        judged = 0
        for chain in chains:
            state, mine = states[chain.pk], set(recorded.get(chain.pk, ()))
            judged += len(mine)
            if mine:
                state.latest_judged = max(mine | {state.latest_judged or 0})
            for j in judgements.get(chain.pk, []):
                if j.height in mine and j.missed and not j.unknown:
                    log.info("%s h=%d: %d validator(s) missed votes", chain.name, j.height, len(j.missed))
            try:
                chain_settings = settings.get(chain.pk) or AlertSettings(chain=chain)
                judged_to = state.latest_judged or 0
                due = judged_to >= self._performance_at.get(chain.pk, -EVERY) + EVERY
                if due:
                    self._performance_at[chain.pk] = judged_to
                evaluate(
                    chain, timezone.now(), chain_settings, state, observer_since=self.started_at, with_performance=due
                )
                self._want_blocks(chain, state)
            except DatabaseError:
                raise
            except Exception:
                log.exception("%s: evaluating the alert rules failed; the other chains go on", chain.name)
        return judged

    def _want_blocks(self, chain: Chain, state: ChainState) -> None:
        """Ask for the block metas of the heights judged since the last fetch (off the tick)."""
        judged_to = state.latest_judged
        now = time.monotonic()
        if not self.fetch_blocks or judged_to is None:
            return
        failed = self.lookups.blocks_failed.get(chain.pk)
        if failed is not None and now - failed < BLOCKS_RETRY:
            return
        since = now - self._blocks_asked.get(chain.pk, -BLOCKS_EVERY)
        if since < BLOCKS_MIN_GAP:
            return  # a backlog is fetched a job every few seconds, not back to back (and not looked up)
        lo = blocks.next_wanted(chain, judged_to, BLOCKS_BACKLOG, self.lookups.blocks_covered.get(chain.pk, 0))
        waiting = judged_to - lo + 1
        if waiting <= 0 or (waiting < BLOCKS_PAGE and since < BLOCKS_EVERY):
            return  # less than a page waits a minute after the last ask
        if self.lookups.ask_blocks(chain, lo, min(judged_to, lo + BLOCKS_PER_JOB - 1)):
            self._blocks_asked[chain.pk] = now

    @staticmethod
    def _record(judgements: dict[int, list[Judgement]]) -> dict[int, list[int]]:
        """Every chain's new verdicts in one transaction. Should the database refuse that, each
        chain's alone, then each height alone: a height it still refuses is recorded as unknown (and
        logged), so no bad height can hold back a chain's verdicts, or anyone's alerts, for good."""
        try:
            return record_all(judgements)
        except (OperationalError, InterfaceError):
            raise  # the database is away: the command waits for it
        except DatabaseError as exc:
            log.error("recording verdicts failed (%s); recording height by height", first_line(exc))
        recorded: dict[int, list[int]] = {}
        for chain_id, js in judgements.items():
            for j in js:
                try:
                    mine = record_all({chain_id: [j]})
                except (OperationalError, InterfaceError):
                    raise
                except DatabaseError as exc:
                    log.error(
                        "chain %s h=%d: verdict refused (%s); recorded as unknown", chain_id, j.height, first_line(exc)
                    )
                    mine = record_all({chain_id: [Judgement(j.height, 0, None, True, 0)]})
                for c, heights in mine.items():
                    recorded.setdefault(c, []).extend(heights)
        return recorded

    def settle(self, timeout: float = 30.0, max_ticks: int = 5) -> int:
        """Ticks until one asks the nodes nothing new, with the answers of each tick's questions in
        hand before the next (tests and --once: judge as far as the nodes allow right now)."""
        judged = 0
        for _ in range(max_ticks):
            asked = self.lookups.asked
            judged += self.run_once()
            self.lookups.wait(timeout)
            if self.lookups.asked == asked:
                break
        return judged

    def close(self) -> None:
        self.lookups.close()
