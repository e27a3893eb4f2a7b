"""Live updates for the consensus page: a websocket per open page, joined to the chain's group.

stream_events publishes {"type": "consensus.update", chain, height, round} to group `chain-<name>`
after each committed batch (consensus.ingest.publish); this consumer forwards it to the browser,
whose script then fetches the re-rendered round. Anonymous users are refused, like on the pages.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from consensus.ingest.publish import group_name
from consensus.models import Chain


class ChainLiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        name = self.scope["url_route"]["kwargs"]["name"]
        if user is None or not user.is_authenticated or not await self._chain_exists(name):
            await self.close(code=4403)
            return
        self.group = group_name(name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def consensus_update(self, event: dict) -> None:
        await self.send_json({"chain": event["chain"], "height": event["height"], "round": event["round"]})

    @database_sync_to_async
    def _chain_exists(self, name: str) -> bool:
        return Chain.objects.filter(name=name).exists()
