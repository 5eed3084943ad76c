"""Hand-off of generated text from engine threads to the event loop, coalesced.

Sending every token as its own loop callback, queue item and stream message
cost more than batching saved: at 8 streams the loop woke 8 times per decode
step, and each wake-up, proto and gRPC write took CPU from the two llama.cpp
threads sharing the cores. Here a generation's text accumulates in a
``Mailbox`` and the consumer takes everything that is ready in one go, so a
consumer that falls behind sends one message for several tokens. All the
mailboxes of one loop share a ``LoopWaker``: however many sequences emit in
one decode step, the loop is woken once (one ``call_soon_threadsafe``).

Text is only ever joined, never split, so a delta still never ends inside a
UTF-8 character or a possible stop sequence (the decoder already held those
back), and the running token count is the one of the last piece taken.
"""

from __future__ import annotations

import asyncio
import threading


class LoopWaker:
    """Coalesces wake-ups of many mailboxes into one loop callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[Mailbox] = []
        self._scheduled = False

    def notify(self, box: Mailbox) -> None:
        """Called on any thread: wake ``box``'s consumer soon."""
        with self._lock:
            self._pending.append(box)
            if self._scheduled:
                return  # a callback is already on its way; it will see box
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        with self._lock:
            boxes, self._pending = self._pending, []
            self._scheduled = False
        for box in boxes:
            box.wake()


class Mailbox:
    """One generation's text so far, written by its thread, read on the loop."""

    def __init__(self, waker: LoopWaker) -> None:
        self._waker = waker
        self._lock = threading.Lock()
        self._text: list[str] = []
        self._produced = 0
        self._notified = False
        self._done = False
        self._waiter: asyncio.Future[None] | None = None

    def emit(self, text: str, produced: int) -> None:
        """Engine thread: add text and the token count so far."""
        with self._lock:
            self._text.append(text)
            self._produced = produced
            if self._notified:
                return  # the consumer has not taken the last wake-up yet
            self._notified = True
        self._waker.notify(self)

    def close(self) -> None:
        """Loop: no more text will come (the engine call has returned)."""
        self._done = True
        self.wake()

    def wake(self) -> None:
        with self._lock:
            self._notified = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> tuple[str, int] | None:
        """All text ready now and the token count, or None once closed and empty."""
        while True:
            with self._lock:
                if self._text:
                    text = "".join(self._text)
                    self._text.clear()
                    return text, self._produced
            if self._done:
                return None
            self._waiter = self._waker.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
