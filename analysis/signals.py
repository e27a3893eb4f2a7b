"""Signing out ends the session's live pages too (their websockets), not only its HTTP requests;
deleting a chain deletes its verdicts and history first (in SQL: no Python-side cascade over millions)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.db import connection
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from common.text import one_line
from consensus.models import Chain

from .consumers import session_group
from .retention import CHAIN_TABLES

log = logging.getLogger("ctop")


@receiver(user_logged_out)
def end_live_pages(sender, request, user, **kwargs) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    layer = get_channel_layer()
    if not session_key or layer is None:
        return
    try:
        async_to_sync(layer.group_send)(session_group(session_key), {"type": "session.ended"})
    except Exception as exc:  # Redis away: signing out must still work (the pages' next request is refused)
        log.warning("could not end the live pages of a signed-out session: %s", one_line(exc))


@receiver(pre_delete, sender=Chain)
def purge_verdicts(sender, instance: Chain, **kwargs) -> None:
    with connection.cursor() as cursor:
        for model in CHAIN_TABLES:
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE chain_id = %s", [instance.pk])  # noqa: S608
