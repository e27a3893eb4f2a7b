"""Live updates for the consensus page: a websocket per open page, joined to the chain's group.

stream_events publishes {"type": "consensus.update", chain, height, round} to group `chain-<name>`
after each committed batch (consensus.ingest.publish); this consumer forwards it to the browser,
whose script then fetches the re-rendered round. Anonymous users are refused, like on the pages.

Each socket also joins its session's group: signing out (analysis.signals) ends every live page
of that session at once, not at the socket's next reconnect.
"""

from __future__ import annotations

import hashlib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from consensus.ingest.publish import group_name
from consensus.models import Chain

SESSION_ENDED = 4401  # the close code the page's script takes as "signed out: go to the sign-in page"


def session_group(session_key: str) -> str:
    """A channel-layer group name for one session (a digest: the key itself is a credential)."""
    return "session-" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


def user_group(user_id: int) -> str:
    """A channel-layer group for every live page of one account: deactivating it ends them all."""
    return f"user-{int(user_id)}"


class ChainLiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        name = self.scope["url_route"]["kwargs"]["name"]
        if user is None or not user.is_authenticated or not await self._chain_exists(name):
            await self.close(code=4403)
            return
        self.groups_joined = [group_name(name), user_group(user.pk)]
        session = self.scope.get("session")
        if session is not None and session.session_key:
            self.groups_joined.append(session_group(session.session_key))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def consensus_update(self, event: dict) -> None:
        await self.send_json({"chain": event["chain"], "height": event["height"], "round": event["round"]})

    async def session_ended(self, event: dict) -> None:
        await self.close(code=SESSION_ENDED)

    @database_sync_to_async
    def _chain_exists(self, name: str) -> bool:
        return Chain.objects.filter(name=name).exists()
