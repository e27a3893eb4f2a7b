"""`manage.py bootstrap`: what a fresh machine needs before ctop runs (used by bin/run).

Creates the database if it does not exist, applies migrations, collects static files (served by
WhiteNoise), and makes sure a staff login exists.
A new login gets a random password, printed once; no password is ever baked into the code.
"""

from __future__ import annotations

import secrets

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from psycopg import sql

from common.cli import CtopCommand
from common.text import first_line
from consensus.networks import NetworksError, ensure_chains, parse_networks


def ensure_database() -> bool:
    """Create the configured database if missing. Returns True if it was created."""
    db = settings.DATABASES["default"]
    params = {
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": "postgres",
        "connect_timeout": 5,
        "autocommit": True,
    }
    try:
        with psycopg.connect(**params) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            return True
    except psycopg.OperationalError as exc:
        first = first_line(exc)
        raise CommandError(
            f"PostgreSQL is not reachable at {params['host']}:{params['port'] or 5432} ({first}); "
            "start it or set DATABASE_URL"
        ) from exc


class Command(CtopCommand):
    help = "Create the database if needed, migrate, and make sure a staff login exists."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin", help="Login to create if none exists (default admin).")
        parser.add_argument("--networks", default="", help="name,url pairs to register as watched chains.")

    def handle(self, *args, **opts) -> None:
        try:  # bad input is refused before anything is created or migrated
            networks = parse_networks(opts["networks"]) if opts["networks"] else None
        except NetworksError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if ensure_database():
            self.stdout.write(f"created database {settings.DATABASES['default']['NAME']}")
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database schema is up to date")
        call_command("collectstatic", interactive=False, verbosity=0)  # served by WhiteNoise, DEBUG on or off
        if networks:
            chains = ensure_chains(networks)
            self.stdout.write("watching " + ", ".join(c.name for c in chains))
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True, is_active=True).exists():
            self.stdout.write(
                "sign in with your existing staff login "
                f"(forgot the password? {'.venv/bin/python manage.py changepassword <user>'})"
            )
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(opts["username"], email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"created login {opts['username']!r} with password {password} "
                "(shown once; change it with: .venv/bin/python manage.py changepassword "
                f"{opts['username']})"
            )
        )
