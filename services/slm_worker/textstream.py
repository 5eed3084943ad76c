"""Turning a stream of token bytes into safe text deltas.

Two things make naive per-token decoding wrong: a UTF-8 character can span
tokens (emit nothing until it is complete), and a stop sequence can span
tokens (hold back any tail that could still become one, so the client never
sees text that is later cut off).
"""

from __future__ import annotations

import codecs


class StopFilter:
    """Holds back text that may be the start of a stop sequence."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return ``(text safe to emit, stopped)``; after ``stopped`` feed no more."""
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = self._holdback(buf)
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def _holdback(self, buf: str) -> int:
        # Longest suffix of buf that is a proper prefix of some stop sequence.
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), best, -1):
                if stop.startswith(buf[-k:]):
                    best = k
                    break
        return best

    def flush(self) -> str:
        """Text still held when generation ended for another reason."""
        out, self._held = self._held, ""
        return out


class TokenTextDecoder:
    """Incremental UTF-8 decoding of token pieces, then stop filtering."""

    def __init__(self, stops: list[str]) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopFilter(stops)

    def feed(self, piece: bytes) -> tuple[str, bool]:
        return self._stops.feed(self._utf8.decode(piece))

    def flush(self) -> str:
        tail = self._utf8.decode(b"", final=True)
        text, _stopped = self._stops.feed(tail)
        return text + self._stops.flush()
