"""The README's main-job command as a user runs it: `bin/run` on a database of its own, until the
pages (through HTTP, signed in with the login it printed) show a rising height and a missed-votes
alert for the demo's flaky validator; then Ctrl-C, and every process is gone, no port left open."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time

import psycopg
import pytest
import redis
import requests

from consensus.simulator import SimChain

from .conftest import ROOT
from .subscriberhelpers import wait_until

DB = "ctop_mainjob_test"
REDIS_URL = "redis://127.0.0.1:6379/13"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def fresh_database() -> None:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
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
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
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
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        fresh_database()


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
    wait_for(lambda: (height() or 0) >= first + 3, 60, "the height to rise", output)

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
    assert proc.wait(60) == 0 or proc.returncode in (-signal.SIGINT, 130), text()[-3000:]
    time.sleep(1)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no process of the group is left
    assert not listening(web) and not listening(sim)
