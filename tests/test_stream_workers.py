"""`stream_events --workers N`: N consumer processes under one command, on real Redis and
PostgreSQL. Same rows as one process; SIGTERM stops them all cleanly; a worker killed with SIGKILL
is restarted and nothing is lost or doubled."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from consensus.models import Chain, Vote
from consensus.streams import GROUP, stream_key

from .conftest import ROOT
from .procs import command_env
from .protocol_fixtures import frames
from .streamhelpers import expected_votes, fill, snapshot
from .subscriberhelpers import wait_until


def stream_events(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "stream_events", "--networks", "testnet", "--no-live", *args],
        cwd=ROOT,
        env=command_env(),
        stdout=subprocess.DEVNULL,
        stderr=kw.pop("stderr", subprocess.PIPE),
        text=True,
        **kw,
    )


def lines():
    return list(frames("ws_frames_normal.jsonl")) + list(frames("ws_frames_one_down.jsonl"))


@pytest.mark.django_db(transaction=True)
def test_two_workers_store_exactly_what_one_would(redis_client):
    Chain.objects.create(name="testnet", chain_id="test-1")
    fill(redis_client, "testnet", lines(), per_entry=3)  # many small entries: both workers get some
    proc = stream_events("--workers", "2", "--until-idle", "--batch", "2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "consumer " in err and "-0 streaming testnet" in err and "-1 streaming testnet" in err
    votes = set(snapshot()["votes"])
    expected = expected_votes(lines())
    assert (len(expected - votes), len(votes - expected)) == (0, 0)  # nothing missing, nothing unsent
    stored = [int(part.split()[0]) for part in err.split(" stored ")[1:]]
    assert len(stored) == 2 and all(n > 0 for n in stored)  # the work was shared


def _log_text(log: Path) -> str:
    return log.read_text()


def _started(*args: str, log: Path, **kw) -> subprocess.Popen:
    """stream_events with its stderr in `log` (a file of its own: the test reads it by path, so
    reading never moves the offset the command writes at)."""
    with open(log, "w") as out:
        return stream_events(*args, stderr=out, **kw)


def _worker_pids(log, i: int) -> list[int]:
    """Every pid worker i has had, in order, from the parent's "stream worker i started" lines."""
    return [int(m) for m in re.findall(rf"stream worker {i} started: pid (\d+)", _log_text(log))]


def _held(client, consumer: str) -> list:
    """Entries `consumer` has read and not acknowledged (none while its group does not exist yet)."""
    try:
        return client.xpending_range(stream_key("testnet"), GROUP, "-", "+", 10, consumername=consumer)
    except redis.ResponseError:  # NOGROUP: the workers are still starting
        return []


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_every_worker_and_a_killed_worker_is_restarted(redis_client, tmp_path):
    Chain.objects.create(name="testnet", chain_id="test-1")
    log = tmp_path / "stream.log"
    proc = _started("--workers", "2", "--claim-idle", "1s", "--batch", "2", log=log)
    normal, one_down = list(frames("ws_frames_normal.jsonl")), list(frames("ws_frames_one_down.jsonl"))
    try:
        parent = psutil.Process(proc.pid)
        wait_until(lambda: _worker_pids(log, 0) and _worker_pids(log, 1), timeout=30, message="both workers")
        (killed,), (other,) = _worker_pids(log, 0), _worker_pids(log, 1)
        # Entries for both, then kill -9 of worker 0 while it holds some (read, not acknowledged).
        fill(redis_client, "testnet", normal, per_entry=2)
        first = f"{socket.gethostname()}-{proc.pid}-0"
        wait_until(
            lambda: _held(redis_client, first),
            timeout=30,
            interval=0.005,
            message="worker 0 holding entries",
        )
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: len(_worker_pids(log, 0)) == 2, timeout=30, message="worker 0 started again")
        assert "stream worker 0 exited with status -9; restarting it" in _log_text(log)
        successor = _worker_pids(log, 0)[1]
        assert {c.pid for c in parent.children()} == {successor, other}
        # The successor works: with worker 1 frozen, it alone stores the next entries.
        os.kill(other, signal.SIGSTOP)
        try:
            fill(redis_client, "testnet", one_down, per_entry=2)
            after = expected_votes(one_down)
            wait_until(
                lambda: Vote.objects.filter(height__gte=min(v[0] for v in after)).count() >= len(after),
                timeout=60,
                message="the successor storing new entries alone",
            )
        finally:
            os.kill(other, signal.SIGCONT)
        # What the killed worker held is stored too (by its successor, or claimed by worker 1):
        # nothing missing, nothing unsent.
        expected = expected_votes(normal) | after
        wait_until(lambda: Vote.objects.count() >= len(expected), timeout=60, message="every vote stored")
        votes = set(snapshot()["votes"])
        assert (len(expected - votes), len(votes - expected)) == (0, 0)
        children = parent.children()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children():
                child.kill()  # a failed test leaves no worker behind
            proc.kill()


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_in_a_terminal_stops_every_worker_gracefully(redis_client, tmp_path):
    """Ctrl-C reaches the whole process group, and the parent forwards the stop too: each worker
    sees it twice within milliseconds, which is one stop, not an operator insisting."""
    Chain.objects.create(name="testnet", chain_id="test-1")
    log = tmp_path / "stream.log"
    proc = _started("--workers", "2", log=log, start_new_session=True)
    try:
        wait_until(
            lambda: all(f"-{i} streaming testnet" in _log_text(log) for i in (0, 1)),
            timeout=30,
            message="both workers streaming",
        )
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = _log_text(log)
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.count("finishing and exiting") == 2  # each worker stopped once, gracefully
