"""The README's main-job command as a user runs it: `bin/run` on a database of its own, until the
pages (through HTTP, signed in with the login it printed) show a rising height and a missed-votes
alert for the demo's flaky validator; then Ctrl-C, and every process is gone, no port left open."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time

import psutil
import psycopg
import pytest
import redis
import requests
from django.conf import settings

from consensus.simulator import SimChain

from .conftest import ROOT
from .procs import database_url, free_port
from .subscriberhelpers import wait_until

DB = "ctop_mainjob_test"
# The test Redis database (TEST_REDIS_URL): bin/run's processes use it like a fresh install would.
REDIS_URL = settings.REDIS_URL


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def fresh_database() -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def wait_for(predicate, timeout: float, message: str, output: list[str]):
    """wait_until, and on a timeout what bin/run printed (the reason is usually there)."""
    try:
        return wait_until(predicate, timeout=timeout, interval=1.0, message=message)
    except AssertionError as exc:
        printed = "".join(output[-60:])
        raise AssertionError(f"{exc}; bin/run printed:\n{printed}") from None


@pytest.fixture
def main_job():
    fresh_database()
    redis.Redis.from_url(REDIS_URL).flushdb()
    web, sim = free_port(), free_port()
    env = os.environ | {
        "DATABASE_URL": database_url(DB),
        "REDIS_URL": REDIS_URL,
        "CTOP_WEB_PORT": str(web),
        "CTOP_SIM_PORT": str(sim),
        "DEBUG": "true",  # local use: plain http, as bin/run's own .env would set
        "SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_SETTINGS_MODULE": "ctop_project.settings",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [str(ROOT / "bin" / "run")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        yield proc, output, web, sim
    finally:
        if proc.poll() is None:
            # honcho starts each process in a session of its own: a failed test kills them by
            # name, not only honcho's group, or they would outlive it.
            children = psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, signal.SIGKILL)
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            proc.wait(10)
        fresh_database()


@pytest.mark.slow
def test_main_job_runs_the_demo_end_to_end_and_stops_cleanly(main_job):
    proc, output, web, sim = main_job
    base = f"http://127.0.0.1:{web}"
    text = lambda: "".join(output)  # noqa: E731
    login = wait_for(lambda: re.search(r"created login '(\w+)' with password (\S+)", text()), 240, "a login", output)
    user, password = login.group(1), login.group(2)
    wait_for(lambda: listening(web), 120, "the web server", output)

    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=10)
    response = session.post(
        f"{base}/accounts/login/?next=/",
        data={"username": user, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=10,
    )
    assert response.status_code == 200 and "sim-1" in response.text, response.text[:500]

    def height() -> int | None:
        page = session.get(f"{base}/chains/sim-1/", timeout=10).text
        found = re.search(r'data-height="(\d+)"', page)
        return int(found.group(1)) if found else None

    first = wait_for(height, 90, "a height on the live page", output)
    watching = time.monotonic()
    wait_for(lambda: (height() or 0) >= first + 3, 60, "the height to rise", output)

    # The demo's late validator (its votes 300 ms and more behind the others') is alerted as slow
    # within two minutes of the pipeline watching the chain.
    late = SimChain("sim-1", validators=5).genesis[0].address
    wait_for(
        lambda: (
            f"/chains/sim-1/validators/{late}/"
            in session.get(f"{base}/alerts/?state=all&kind=slow_validator", timeout=10).text
        ),
        120 - (time.monotonic() - watching),
        "a slow-validator alert for the late validator within two minutes",
        output,
    )

    flaky = SimChain("sim-1", validators=5).genesis[2].address  # the demo's validator that drops out
    wait_for(
        lambda: f"/chains/sim-1/validators/{flaky}/" in session.get(f"{base}/alerts/?state=all", timeout=10).text,
        180,
        "a missed-votes alert for the flaky validator",
        output,
    )
    alerts = session.get(f"{base}/alerts/?state=all&kind=missed_votes", timeout=10).text
    assert f"/chains/sim-1/validators/{flaky}/" in alerts
    # Static files are served (the admin's CSS) by the app server itself.
    assert session.get(f"{base}/static/admin/css/base.css", timeout=10).status_code == 200

    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    # honcho exits 130 after an interrupt it handled (the shell's convention; a death by the signal
    # would be -2), and every process it ran stopped on its own with status 0.
    assert proc.wait(60) == 130, text()[-3000:]
    for name in ("simulator", "subscriber", "indexer", "analyzer", "stream", "web"):
        assert f"{name}.1 stopped (rc=0)" in text(), text()[-3000:]

    def group_gone() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(group_gone, timeout=10, message="no process of the group left")
    assert not listening(web) and not listening(sim)
