"""The foundation: settings, migrations, lint."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.db import connection

from .conftest import ROOT


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # The test settings relax some SECURE_* variables in this process; children start clean.
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE") and not k.startswith("SECURE_")
    }
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def test_secret_key_required_without_debug():
    # Variables set in the environment win over a local .env, so this holds on any checkout.
    proc = run_manage("check", env={"DEBUG": "false", "SECRET_KEY": ""})
    assert proc.returncode == 2
    assert "SECRET_KEY is not set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_deploy_is_clean_with_production_settings():
    proc = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DEBUG": "false",
            "SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
            "ALLOWED_HOSTS": "ctop.example.com",
            "SECURE_HSTS_SECONDS": "31536000",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
            "SECURE_HSTS_PRELOAD": "true",
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_migrations_created_the_natural_keys_and_history_constraint():
    with connection.cursor() as cur:
        cur.execute(
            "SELECT conname FROM pg_constraint WHERE conname = ANY(%s)",
            [
                [
                    "consensus_vote_pkey",
                    "round_natural_key",
                    "roundstep_natural_key",
                    "membership_no_overlap",
                    "commitsig_natural_key",
                    "gap_natural_key",
                ]
            ],
        )
        found = {row[0] for row in cur.fetchall()}
    assert found == {
        "consensus_vote_pkey",  # the natural key is the primary key (partitioned: consensus 0007)
        "round_natural_key",
        "roundstep_natural_key",
        "membership_no_overlap",
        "commitsig_natural_key",
        "gap_natural_key",
    }


@pytest.mark.django_db(transaction=True)
def test_each_command_labels_its_database_connection():
    """pg_stat_activity names the command behind each connection (application_name ctop:<command>)."""
    from .procs import Command
    from .subscriberhelpers import wait_until

    names: set[str] = set()
    command = Command("stream_events")  # no chain yet: it waits, with its connection open
    try:

        def labelled() -> bool:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND pid = ANY("
                    "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'ctop:%%')"
                )
                names.update(row[0] for row in cur.fetchall())
            return "ctop:stream_events" in names

        wait_until(labelled, timeout=20, message="the command's connection in pg_stat_activity")
    finally:
        stopped = command.stop()
    assert stopped == 0


def test_ruff_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nothing_reads_outside_the_repository():
    """A clone in an empty folder must pass its tests: every test, script and benchmark reads only
    what the repository holds (the real captures live under tests/fixtures)."""
    offenders = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".sh", ".toml", ".cfg") and path.parent.name != "bin":
            continue
        if ".venv" in path.parts or ".git" in path.parts or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.name != "test_project.py" and any(mark in text for mark in ("../" + "shared", "parent.parent.parent")):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    assert (ROOT / "tests" / "fixtures" / "cometbft-v1.0.1-localnet" / "README.md").is_file()


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_skipped_area_fails_ci_and_is_said_outside_it(ci):
    """A machine missing the localnet (or chromium, or redis-server) proves nothing about that area:
    under CI=true the run fails with one line naming it; elsewhere the run says so at the end."""
    env = {**os.environ, "CTOP_SKIP_LOCALNET": "1", "CI": ci}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_e2e_subscriber.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = "the localnet end-to-end tests (injective-core, x86_64 Linux) skipped: real CometBFT localnet unavailable"
    if ci:
        assert proc.returncode == 1 and f"CI FAILS: {line}" in proc.stdout, proc.stdout[-2000:]
    else:
        assert proc.returncode == 0 and f"NOT TESTED HERE: {line}" in proc.stdout, proc.stdout[-2000:]
