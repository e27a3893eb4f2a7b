"""`manage.py prune_events --older-than 7d`: retention for the consensus event tables."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils import timezone

from analysis.retention import prune_history, prune_verdicts
from common.cli import CtopCommand, parse_duration
from common.commands import require_database
from consensus.models import Chain
from consensus.networks import chain_watch
from consensus.retention import prune


class Command(CtopCommand):
    help = (
        "Drop vote partitions and delete other consensus events older than a duration (and, when asked,"
        " verdicts and history); compact vote partitions no longer written."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than",
            type=parse_duration,
            required=True,
            help="Age to keep, e.g. 7d, 36h (events received before now minus this go).",
        )
        parser.add_argument(
            "--networks", default="", help="Comma-separated chain names to prune (default: every chain)."
        )
        parser.add_argument("--batch-size", type=int, default=10_000, help="Rows per DELETE (default 10000).")
        parser.add_argument(
            "--verdicts-older-than",
            type=parse_duration,
            default=None,
            help="Also delete verdicts of heights judged longer ago than this, e.g. 365d (default: keep them).",
        )
        parser.add_argument(
            "--history-older-than",
            type=parse_duration,
            default=None,
            help="Also delete the packed history of heights judged longer ago than this (default: keep it).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would go; delete nothing.")

    def handle(self, *args, **opts) -> None:
        if opts["batch_size"] <= 0:
            raise CommandError("--batch-size must be positive", returncode=2)
        names = chain_watch(opts["networks"]).names  # the shared --networks syntax (exit 2 if bad)
        require_database()
        chains = Chain.objects.all()  # disabled chains too: their old events age like the others
        if names:
            unknown = sorted(set(names) - set(chains.filter(name__in=names).values_list("name", flat=True)))
            if unknown:
                raise CommandError(f"unknown network(s): {', '.join(unknown)}", returncode=2)
            chains = chains.filter(name__in=names)
        cutoff = timezone.now() - opts["older_than"]
        chains = list(chains)
        report = prune(cutoff=cutoff, chains=chains, batch_size=opts["batch_size"], dry_run=opts["dry_run"])
        # The analysis's own tiers, each only when asked: per-validator verdicts, packed history.
        for option, prune_tier in (("verdicts_older_than", prune_verdicts), ("history_older_than", prune_history)):
            if opts[option] is not None:
                prune_tier(
                    report,
                    cutoff=timezone.now() - opts[option],
                    chains=chains,
                    batch_size=opts["batch_size"],
                    dry_run=opts["dry_run"],
                )
        verb = "would delete" if opts["dry_run"] else "deleted"
        for name, height in report.cut_heights.items():
            self.stdout.write(f"{name}: events below height {height} are older than {cutoff:%Y-%m-%d %H:%M:%S%z}")
        for label, n in report.deleted.items():
            self.stdout.write(f"{verb} {n} {label}")
