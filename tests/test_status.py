"""`manage.py ctop_status` on real Redis and PostgreSQL: every stage's height, the stream backlog,
and a non-zero exit status when a watched chain has a problem."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from analysis.models import Alert, AlertKind, Severity
from analysis.runner import MissingVoteAnalyzer
from consensus.models import ChainStatus, DeadLetter
from consensus.streams import GROUP, last_height_key, stream_key

from .analysishelpers import OLD, all_sign, play


def status(*args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("ctop_status", *args, stdout=out, stderr=StringIO())
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


@pytest.mark.django_db
def test_status_reports_every_stage_and_fails_on_problems(net, redis_client):
    for h in range(10, 16):
        play(net, h, all_sign())
    play(net, 16, all_sign(), started=timezone.now())  # in progress: 15 waits for late votes
    MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False).run_once()
    ChainStatus.objects.create(chain=net, state="connected", endpoint="http://n1:26657", updated_at=timezone.now())
    key = stream_key("testnet")
    for i in range(5):
        redis_client.xadd(key, {"n": i})
    redis_client.xgroup_create(key, GROUP, id="0")
    redis_client.xreadgroup(GROUP, "c1", {key: ">"}, count=2)  # 2 read, not acknowledged; 3 unread
    redis_client.set(last_height_key("testnet"), 17)

    code, out = status("--json")
    (row,) = json.loads(out)
    assert code == 0 and row["healthy"]
    assert (row["seen"], row["stored"], row["analysed"]) == (17, 16, 14)
    assert (row["stream_length"], row["unread"], row["pending"]) == (5, 3, 2)
    assert row["endpoint"] == "http://n1:26657" and row["state"] == "connected"

    code, out = status()
    assert code == 0 and "testnet" in out and "http://n1:26657" in out and "connected" in out

    # The subscriber is blind, stream_events is far behind, a critical alert is open, a dead letter.
    ChainStatus.objects.filter(chain=net).update(state="all_failing", reason="connection refused")
    redis_client.set(last_height_key("testnet"), 40)
    Alert.objects.create(
        chain=net, kind=AlertKind.STALLED, severity=Severity.CRITICAL, opened_at=OLD, updated_at=OLD, summary="x"
    )
    DeadLetter.objects.create(chain=net, stream=key, entry_id="1-0", frame_index=0, payload="{", reason="bad json")
    code, out = status()
    assert code == 1
    assert "testnet: subscriber all_failing (connection refused)" in out
    assert "testnet: stream_events behind: stored 16, seen 40" in out
    assert "1 critical alert(s) open" in out


@pytest.mark.django_db
def test_status_with_no_chains_and_without_redis(db, settings):
    code, out = status()
    assert code == 0 and "no chains yet" in out
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    err = StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("ctop_status", stdout=StringIO(), stderr=err)
    assert exit_.value.code == 1  # a pipeline without its Redis is a problem, chains or none
    assert "Redis is not reachable at redis://127.0.0.1:1/0" in err.getvalue()


@pytest.mark.django_db
def test_the_analyzer_trailing_by_a_tick_is_normal_stopped_is_a_problem(net, redis_client):
    from datetime import timedelta

    from analysis.models import HeightVerdict

    for h in range(10, 16):
        play(net, h, all_sign())
    play(net, 16, all_sign(), started=timezone.now())
    MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False).run_once()  # judges 11-14
    for h in range(17, 40):
        play(net, h, all_sign(), started=timezone.now())
    ChainStatus.objects.create(chain=net, state="connected", endpoint="http://n1", updated_at=timezone.now())
    code, out = status()
    assert code == 0, out  # 25 heights behind, but it recorded a verdict moments ago: between ticks
    HeightVerdict.objects.update(judged_at=timezone.now() - timedelta(minutes=5))
    code, out = status()
    assert code == 1 and "testnet: analyzer behind: analysed 14, stored 39, last verdict 300s ago" in out
