"""`manage.py ctop_status`: the pipeline's health per chain, at a glance. Exit status 1 when a
watched chain has a problem (for cron jobs and monitoring checks), 0 when all is well."""

from __future__ import annotations

import json

import redis
from django.conf import settings

from analysis.status import as_dict, collect
from common.cli import CtopCommand
from common.commands import require_database
from common.text import one_line, redact_url
from consensus.streams import connect


def _n(value) -> str:
    return "-" if value is None else str(value)


class Command(CtopCommand):
    help = "Per chain: connected endpoint, latest height seen/stored/analysed, stream lag, dead letters, alerts."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="One JSON document instead of a table.")
        parser.add_argument(
            "--lag", type=int, default=5, help="Heights a stage may trail the one before it (default 5)."
        )

    def handle(self, *args, **opts) -> None:
        require_database()
        client = connect(settings.REDIS_URL)
        try:
            client.ping()
        except redis.RedisError as exc:
            self.stderr.write(
                f"Redis is not reachable at {redact_url(settings.REDIS_URL)} ({one_line(exc)}); "
                "heights seen and lag unknown"
            )
            client = None
        rows = collect(client, lag_heights=opts["lag"])
        if opts["json"]:
            self.stdout.write(json.dumps([as_dict(r) for r in rows], indent=2, default=str))
        else:
            header = (
                *("chain", "state", "endpoint", "seen", "stored", "analysed"),
                *("unread", "pending", "dead", "gaps", "alerts"),
            )
            table = [header]
            for r in rows:
                alerts = " ".join(f"{n} {label}" for label, n in sorted(r.alerts.items())) or "none"
                table.append(
                    (
                        r.chain + ("" if r.enabled else " (disabled)"),
                        r.state,
                        r.endpoint or "-",
                        _n(r.seen),
                        _n(r.stored),
                        _n(r.analysed),
                        _n(r.unread),
                        _n(r.pending),
                        str(r.dead_letters),
                        str(r.open_gaps),
                        alerts,
                    )
                )
            widths = [max(len(row[i]) for row in table) for i in range(len(header))]
            for row in table:
                self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if not rows:
                self.stdout.write("no chains yet: run subscribe_events --networks name,url or bin/run")
            for r in rows:
                for problem in r.problems:
                    self.stdout.write(f"{r.chain}: {problem}")
        if client is None or any(r.problems for r in rows):
            raise SystemExit(1)
