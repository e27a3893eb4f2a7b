"""`stream_events --workers N`: N consumer processes under one command, on real Redis and
PostgreSQL. Same rows as one process; SIGTERM stops them all cleanly; a worker killed with SIGKILL
is restarted and nothing is lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from django.db import connection

from consensus.models import Chain, Vote

from .conftest import ROOT
from .protocol_fixtures import frames
from .test_stream_events import expected_votes, fill, snapshot


def env() -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ctop_project.settings_test",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
    }


def stream_events(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "stream_events", "--networks", "testnet", "--no-live", *args],
        cwd=ROOT,
        env=env(),
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
    votes = {(h, r, t, a, bytes(b) if b else None) for h, r, t, a, b in snapshot()["votes"]}
    assert votes == expected_votes(lines())
    assert Vote.objects.count() == len(votes)
    stored = [int(part.split()[0]) for part in err.split(" stored ")[1:]]
    assert len(stored) == 2 and all(n > 0 for n in stored)  # the work was shared


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_every_worker_and_a_killed_worker_is_restarted(redis_client, tmp_path):
    Chain.objects.create(name="testnet", chain_id="test-1")
    log = open(tmp_path / "stream.log", "w+")  # noqa: SIM115 - closed below
    proc = stream_events("--workers", "2", "--claim-idle", "1s", stderr=log)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while len(parent.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = parent.children()
        assert len(workers) == 2
        time.sleep(1.0)
        workers[0].kill()  # kill -9 of one worker: the parent starts another
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log.seek(0)
            if "restarting it" in log.read() and len(parent.children()) == 2:
                break
            time.sleep(0.2)
        assert len(parent.children()) == 2 and workers[0].pid not in {c.pid for c in parent.children()}
        # The replacement works: entries written now are stored, once.
        fill(redis_client, "testnet", lines(), per_entry=5)
        expected = expected_votes(lines())
        deadline = time.monotonic() + 60
        while Vote.objects.count() < len(expected) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert Vote.objects.count() == len(expected)
        children = parent.children()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.seek(0)
        text = log.read()
        log.close()
    assert "exited with status -9; restarting it" in text


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_in_a_terminal_stops_every_worker_gracefully(redis_client, tmp_path):
    """Ctrl-C reaches the whole process group, and the parent forwards the stop too: each worker
    sees it twice within milliseconds, which is one stop, not an operator insisting."""
    Chain.objects.create(name="testnet", chain_id="test-1")
    log = open(tmp_path / "stream.log", "w+")  # noqa: SIM115 - closed below
    proc = stream_events("--workers", "2", stderr=log, start_new_session=True)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while len(parent.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # both workers streaming
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.seek(0)
        text = log.read()
        log.close()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.count("finishing and exiting") == 2  # each worker stopped once, gracefully
