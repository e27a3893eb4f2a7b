"""websocket-client with the bounds it lacks: a maximum message size, a deadline for any one
message, and a deadline for the opening handshake.

websocket-client reads a frame whole, whatever length its header announces (a 200 MiB frame cost
403 MiB of RSS in the one process that serves every chain), and a frame dripped a byte a second
never times out, because each socket read succeeds. Here the announced length is checked before a
byte of payload is read, fragments count towards the same message, and a message still incomplete
`message_deadline` seconds after its first byte ends the connection.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from urllib.parse import unquote, urlsplit

import websocket
from websocket._abnf import ABNF, frame_buffer


class MessageTooLarge(websocket.WebSocketException):
    """The node announced (or sent) a message longer than the limit: the connection is dropped."""


class MessageTooSlow(websocket.WebSocketException):
    """A message was still incomplete after its deadline (a dripping node): the connection is dropped."""


class _BoundedFrames(frame_buffer):
    def __init__(self, ws: BoundedWebSocket, recv_fn, skip_utf8_validation: bool) -> None:
        super().__init__(recv_fn, skip_utf8_validation)
        self.ws = ws

    def recv_length(self) -> None:
        super().recv_length()
        # Before the payload is read: this frame plus the fragments already held.
        held = len(self.ws.cont_frame.cont_data[1]) if self.ws.cont_frame.cont_data else 0
        if self.length is not None and self.length + held > self.ws.max_message:
            self.ws.broken = True
            raise MessageTooLarge(
                f"the node sent a message of {self.length + held} bytes (limit {self.ws.max_message}); "
                "raise --max-frame-kb if this node's events are really that large"
            )


class BoundedWebSocket(websocket.WebSocket):
    def __init__(self, *, max_message: int, message_deadline: float, **kw) -> None:
        super().__init__(**kw)
        self.max_message = max_message
        self.message_deadline = message_deadline
        self.frame_buffer = _BoundedFrames(self, self._recv_bounded, kw.get("skip_utf8_validation", False))
        self._message_started: float | None = None
        self._call_started: float | None = None  # when the recv() under way began
        # A bound was broken: the stream is mid-frame and must not be read again (a polite close
        # would read the rest of the 200 MiB frame while waiting for the node's close frame).
        self.broken = False

    def in_message(self) -> bool:
        fb = self.frame_buffer
        return bool(fb.header is not None or fb.recv_buffer or self.cont_frame.cont_data)

    def _recv_bounded(self, bufsize: int) -> bytes:
        # The clock starts with a message's first byte (not with the wait for it: a quiet chain is
        # silent for seconds between events) and stops when the message is complete.
        self.check_message_deadline()
        data = self._recv(bufsize)
        if data and self._message_started is None:
            self._message_started = time.monotonic()
        return data

    def recv_frame(self):
        frame = super().recv_frame()
        if frame.opcode in (ABNF.OPCODE_PING, ABNF.OPCODE_PONG, ABNF.OPCODE_CLOSE) and not self.cont_frame.cont_data:
            # A control frame between messages: the next message's clock starts with its own bytes.
            self._message_started = time.monotonic() if any(self.frame_buffer.recv_buffer) else None
        return frame

    def recv(self) -> str:  # type: ignore[override]
        """The next message as text: bad UTF-8 is replaced (the frame then fails to decode and is
        dead-lettered, instead of ending the connection with a traceback), a binary message is
        taken as text too, and "" means the node closed. The whole call is bounded as well: a node
        that keeps it busy with pings, or anything else that never makes a message, is cut off."""
        self._call_started = time.monotonic()
        try:
            with self.readlock:
                opcode, data = self.recv_data()
        finally:
            self._call_started = None
        # Complete. Bytes of the next message may already be buffered: its clock starts now.
        self._message_started = time.monotonic() if any(self.frame_buffer.recv_buffer) else None
        if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
            return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return ""

    def close(self, *args, **kw) -> None:  # type: ignore[override]
        if self.broken:
            self.shutdown()  # no closing handshake: just drop the connection
        else:
            super().close(*args, **kw)

    def check_message_deadline(self) -> None:
        """Raise if a message has been arriving for too long (also called between reads that timed
        out), or one read has been kept busy that long without a message (a ping flood)."""
        now = time.monotonic()
        if self._message_started is not None and now - self._message_started > self.message_deadline:
            self.broken = True
            raise MessageTooSlow(f"a message took longer than {self.message_deadline:g}s to arrive")
        if self._call_started is not None and now - self._call_started > self.message_deadline:
            self.broken = True
            raise MessageTooSlow(f"the node kept a read busy for {self.message_deadline:g}s without a message")

    def connect_within(self, url: str, deadline: float) -> None:
        """connect() with a deadline for the whole handshake: a node that accepts the TCP connection
        and then drips its HTTP upgrade reply is cut off when the deadline passes."""

        def cut() -> None:
            sock = self.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        parts = urlsplit(url)
        headers = []
        if parts.username or parts.password:  # websocket-client ignores credentials in the URL itself
            token = base64.b64encode(f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode())
            headers.append("Authorization: Basic " + token.decode())
        timer = threading.Timer(deadline, cut)
        timer.daemon = True
        timer.start()
        try:
            self.connect(url, timeout=deadline, header=headers, redirect_limit=0)  # no redirect is followed
        finally:
            timer.cancel()
