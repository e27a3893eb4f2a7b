"""Telling live pages what changed, off the persistence path.

A bounded queue and one thread: if the channel layer (Redis) is slow or down, updates are dropped
(the pages still work by reload), never persistence slowed or broken.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading

log = logging.getLogger("ctop.stream")


def group_name(chain_name: str) -> str:
    """The Channels group a chain's live page listens on."""
    return f"chain-{chain_name}"


class LivePublisher(threading.Thread):
    def __init__(self, maxsize: int = 1000) -> None:
        super().__init__(name="live-publisher", daemon=True)
        self.queue: queue.Queue[tuple[str, int, int] | None] = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        self.sent = 0

    def publish(self, chain_name: str, height: int, round_: int) -> None:
        try:
            self.queue.put_nowait((chain_name, height, round_))
        except queue.Full:
            self.dropped += 1

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)

    def run(self) -> None:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        send = async_to_sync(layer.group_send)
        failing = False
        while True:
            item = self.queue.get()
            if item is None:
                return
            chain, height, round_ = item
            try:
                send(group_name(chain), {"type": "consensus.update", "chain": chain, "height": height, "round": round_})
                self.sent += 1
                failing = False
            except Exception as exc:  # the live view is best effort
                self.dropped += 1
                if not failing:
                    log.warning("live updates unavailable (%s); pages still work by reload", exc)
                failing = True
