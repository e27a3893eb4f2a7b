"""Every command as an operator runs it, as a real process: input that can never become valid is
one line and exit status 2; SIGTERM finishes the work at hand and exits 0; a second signal more
than a second later exits at once."""

from __future__ import annotations

import signal
import time

import pytest

from consensus.models import Endpoint

from .hostile import HostileNode
from .procs import Command, run
from .subscriberhelpers import wait_until

BAD = [
    ("subscribe_events", "--networks", "osmosis"),
    ("subscribe_events", "--buffer-mb", "0"),
    ("subscribe_events", "--max-frame-kb", "x"),
    ("stream_events", "--batch", "0"),
    ("stream_events", "--workers", "99"),
    ("stream_events", "--networks", "bad name!"),
    ("stream_events", "--claim-idle", "soon"),
    ("index_validators", "--poll-frequency", "often"),
    ("index_validators", "--networks", "a,tcp://h:1,b"),
    ("index_validators", "--db.url", "postgres://x"),
    ("analyze", "missing-blocks"),
    ("analyze", "missing-votes", "--poll-frequency", "-5s"),
    ("analyze", "missing-votes", "--network", "bad name!"),
    ("prune_events",),
    ("prune_events", "--older-than", "7d", "--batch-size", "0"),
    ("prune_events", "--older-than", "7d", "--networks", "nosuchchain"),
    ("prune_events", "--older-than", "7d", "--verdicts-older-than", "soon"),
    ("ctop_status", "--lag", "many"),
    ("simulate_chain", "--block-time", "fast"),
    ("bootstrap", "--networks", "osmosis,ftp://h:1"),
    ("team", "promote", "alice"),
    ("team", "deactivate", "nobody"),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("args", BAD, ids=[" ".join(a) for a in BAD])
def test_input_that_can_never_be_valid_is_one_line_and_exit_2(args):
    proc = run(*args, timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == "", proc.stdout  # refused before doing anything


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "working"),
    [
        (("stream_events",), "streaming testnet"),
        (("analyze", "missing-votes"), "analysing every enabled chain"),
        (("index_validators",), "testnet: validator set not updated"),  # its endpoint refuses
    ],
    ids=["stream_events", "analyze", "index_validators"],
)
def test_sigterm_stops_a_long_running_command_with_status_0(args, working, chain):
    command = Command(*args)
    try:
        wait_until(lambda: command.said(working), timeout=30, message=f"{args[0]} at work")
    finally:
        code = command.stop(timeout=20)
    assert code == 0, command.text[-2000:]
    assert "finishing and exiting" in command.text and "Traceback" not in command.text


@pytest.mark.django_db(transaction=True)
def test_a_second_signal_more_than_a_second_later_exits_at_once(chain):
    # The indexer's pass is stuck on an endpoint that drips its /status: at the first SIGTERM it
    # waits for the pass (up to its deadline). An operator who insists, a second signal more than
    # a second later, is obeyed at once.
    node = HostileNode().start()
    node.status_drip = 0.5
    Endpoint.objects.filter(chain=chain).update(url=node.url)
    command = Command("index_validators")
    try:
        wait_until(lambda: node.requests, timeout=20, message="the pass under way")
        command.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: command.said("finishing and exiting"), timeout=10)
        time.sleep(1.2)  # more than a second: insisting, not the same stop delivered twice
        assert command.proc.poll() is None  # still finishing the pass
        insisted = time.monotonic()
        command.proc.send_signal(signal.SIGTERM)
        code = command.wait(timeout=10)
        assert time.monotonic() - insisted < 1.0
        assert code == 1 and "exiting now, without finishing" in command.text
    finally:
        if command.proc.poll() is None:
            command.proc.kill()
        node.stop()
