"""Signing out ends the session's live pages too (their websockets), not only its HTTP requests;
so does deactivating an account (in the admin or with `manage.py team deactivate`): its pages'
next request is refused by Django's auth backend, and its open sockets are closed at once;
deleting a chain deletes its verdicts and history first (in SQL: no Python-side cascade over millions)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import connection
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver

from common.text import one_line
from consensus.models import Chain

from .consumers import session_group, user_group
from .retention import CHAIN_TABLES

log = logging.getLogger("ctop")


def _end(group: str, what: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "session.ended"})
    except Exception as exc:  # Redis away: signing out must still work (the pages' next request is refused)
        log.warning("could not end the live pages of %s: %s", what, one_line(exc))


@receiver(user_logged_out)
def end_live_pages(sender, request, user, **kwargs) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        _end(session_group(session_key), "a signed-out session")


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def end_deactivated_accounts_pages(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    if not created and not instance.is_active and (update_fields is None or "is_active" in update_fields):
        _end(user_group(instance.pk), "a deactivated account")


@receiver(pre_delete, sender=Chain)
def purge_verdicts(sender, instance: Chain, **kwargs) -> None:
    with connection.cursor() as cursor:
        for model in CHAIN_TABLES:
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE chain_id = %s", [instance.pk])  # noqa: S608
