"""`manage.py team`: the team's accounts, for people who read the pages but do not run ctop.

    manage.py team add alice [--email a@example.com] [--can-resolve] [--can-watch] [--staff]
    manage.py team list
    manage.py team reset-password alice
    manage.py team deactivate alice

A new account, or a reset one, gets a random password printed once (it can be changed at
/accounts/password/). Team members sign in at /accounts/login/ and see every page; the admin is for
staff only. --can-resolve grants analysis.resolve_alert (resolving an alert by hand); --can-watch
grants analysis.add_watchedvalidator and delete_watchedvalidator (marking validators as ours on their
pages); --staff grants both.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import CommandError

from common.cli import CtopCommand
from common.commands import require_database

WATCH = ("add_watchedvalidator", "delete_watchedvalidator")


def _permission() -> Permission:
    return Permission.objects.get(content_type__app_label="analysis", codename="resolve_alert")


def _watch_permissions() -> list[Permission]:
    return list(Permission.objects.filter(content_type__app_label="analysis", codename__in=WATCH))


class Command(CtopCommand):
    help = "Add, list, reset or deactivate team accounts (sign-in for the pages, not the admin)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Create an account and print its password once.")
        add.add_argument("username")
        add.add_argument("--email", default="")
        add.add_argument("--can-resolve", action="store_true", help="May resolve alerts by hand.")
        add.add_argument("--can-watch", action="store_true", help="May mark validators as watched (ours).")
        add.add_argument(
            "--staff", action="store_true", help="May also use the admin (implies --can-resolve and --can-watch)."
        )
        sub.add_parser("list", help="Every account, with what it may do.")
        reset = sub.add_parser("reset-password", help="A new random password, printed once.")
        reset.add_argument("username")
        off = sub.add_parser("deactivate", help="The account can no longer sign in (its history stays).")
        off.add_argument("username")

    def handle(self, *args, **opts) -> None:
        require_database()
        getattr(self, opts["action"].replace("-", "_"))(opts)

    def _user(self, username: str):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no account named {username!r} (see: manage.py team list)", returncode=2) from None

    def add(self, opts: dict) -> None:
        users = get_user_model().objects
        if users.filter(username=opts["username"]).exists():
            raise CommandError(f"an account named {opts['username']!r} exists already", returncode=2)
        password = secrets.token_urlsafe(12)
        user = users.create_user(opts["username"], email=opts["email"], password=password, is_staff=opts["staff"])
        if opts["can_resolve"] or opts["staff"]:
            user.user_permissions.add(_permission())
        if opts["can_watch"] or opts["staff"]:
            user.user_permissions.add(*_watch_permissions())
        self.stdout.write(
            f"created {user.username!r} with password {password} (shown once; sign in at /accounts/login/, "
            "change it at /accounts/password/)"
        )

    def list(self, opts: dict) -> None:
        permission = _permission()
        for user in get_user_model().objects.order_by("username"):
            rights = ["pages"]
            if user.is_superuser or user.user_permissions.filter(pk=permission.pk).exists():
                rights.append("resolve")
            granted = user.user_permissions.filter(content_type__app_label="analysis", codename__in=WATCH).count()
            if user.is_superuser or granted == len(WATCH):  # not has_perms: a deactivated account has none
                rights.append("watch")
            if user.is_staff:
                rights.append("admin")
            state = "" if user.is_active else " (deactivated)"
            self.stdout.write(f"{user.username}{state}: {', '.join(rights)}")

    def reset_password(self, opts: dict) -> None:
        user = self._user(opts["username"])
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
        self.stdout.write(f"new password for {user.username!r}: {password} (shown once)")

    def deactivate(self, opts: dict) -> None:
        user = self._user(opts["username"])
        user.is_active = False
        user.save(update_fields=["is_active"])
        self.stdout.write(f"{user.username!r} can no longer sign in")
