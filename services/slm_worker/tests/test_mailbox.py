"""Mailbox: thread-side emits reach the loop coalesced, in order, and complete."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from services.slm_worker.mailbox import LoopWaker, Mailbox


async def _drain(box: Mailbox) -> list[tuple[str, int]]:
    out = []
    while (item := await box.take()) is not None:
        out.append(item)
    return out


async def test_ready_text_is_taken_in_one_piece_with_the_last_count() -> None:
    loop = asyncio.get_running_loop()
    box = Mailbox(LoopWaker(loop))
    for i, text in enumerate(["a", "é", "b"], start=1):
        box.emit(text, i)  # all ready before the consumer looks
    box.close()
    assert await _drain(box) == [("aéb", 3)]


class _CountingLoop:
    """The running loop, counting call_soon_threadsafe (the wake-ups)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.wakeups = 0

    def call_soon_threadsafe(self, cb: Any) -> Any:
        self.wakeups += 1
        return self._loop.call_soon_threadsafe(cb)

    def create_future(self) -> asyncio.Future[None]:
        return self._loop.create_future()


async def test_one_loop_wake_serves_many_mailboxes() -> None:
    loop = _CountingLoop(asyncio.get_running_loop())
    waker = LoopWaker(loop)  # type: ignore[arg-type]
    boxes = [Mailbox(waker) for _ in range(8)]

    # One batched decode step: every sequence emits, back to back.
    def step() -> None:
        for b in boxes:
            b.emit("x", 1)

    step()  # on the loop's own thread, so the loop cannot run in between
    assert loop.wakeups == 1
    for b in boxes:
        b.close()
    assert [await _drain(b) for b in boxes] == [[("x", 1)]] * 8


async def test_text_from_a_thread_arrives_whole_and_in_order() -> None:
    loop = asyncio.get_running_loop()
    box = Mailbox(LoopWaker(loop))
    n = 2000

    def produce() -> None:
        for i in range(1, n + 1):
            box.emit(f"{i},", i)

    thread = threading.Thread(target=produce)
    consumer = asyncio.ensure_future(_drain(box))
    thread.start()
    await asyncio.to_thread(thread.join)
    box.close()
    pieces = await consumer
    assert "".join(t for t, _ in pieces) == "".join(f"{i}," for i in range(1, n + 1))
    counts = [c for _, c in pieces]
    assert counts == sorted(counts) and counts[-1] == n
