"""Running ctop's commands as real processes in tests: the environment that points them at the test
database and Redis (honouring DATABASE_URL and TEST_REDIS_URL), a free port, and a child whose
stderr is collected as it runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from .conftest import ROOT


def database_url(name: str | None = None) -> str:
    """The test database (or `name` on the same server) as a URL, from Django's own settings."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{name or db['NAME']}"


def command_env(**extra: str) -> dict[str, str]:
    """A child's environment: the test settings, the test database and the test Redis."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ctop_project.settings_test",
        "DATABASE_URL": database_url(),
        "TEST_REDIS_URL": settings.REDIS_URL,
        "LOG_LEVEL": "INFO",
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Command:
    """`manage.py <args>` as a child process; its stderr lines are kept in `lines` as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, **popen) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env or command_env(),
            stdout=popen.pop("stdout", subprocess.DEVNULL),
            stderr=subprocess.PIPE,
            text=True,
            **popen,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def said(self, fragment: str) -> bool:
        return fragment in self.text

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self, timeout: float = 20) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.wait(5)


def run(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`manage.py <args>` to completion."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env or command_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
