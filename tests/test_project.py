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
                    "vote_natural_key",
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
        "vote_natural_key",
        "round_natural_key",
        "roundstep_natural_key",
        "membership_no_overlap",
        "commitsig_natural_key",
        "gap_natural_key",
    }


@pytest.mark.django_db
def test_connections_are_labelled():
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('application_name')")
        name = cur.fetchone()[0]
    assert name.startswith("ctop")


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
