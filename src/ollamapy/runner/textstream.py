"""Turning a stream of token pieces (bytes) into text that is safe to send.

Two small, pure state machines used once per generated token:

* `Utf8Decoder` never emits half a character: a token may end in the middle of a
  multi-byte sequence (emoji are often split over 2-4 byte-level tokens), so incomplete
  trailing bytes are held until the next piece completes them.
* `StopMatcher` finds stop strings that span token boundaries: text that could still be
  the start of a stop string is held back; once a stop string is seen, everything before
  it is released and the stop text itself is never emitted.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable


class Utf8Decoder:
    """Incremental UTF-8 decoding; invalid bytes become U+FFFD instead of raising."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        """Decode `data`, holding back a trailing incomplete character."""
        return self._decoder.decode(data)

    @property
    def pending(self) -> int:
        """1 while the bytes of an incomplete character are held back, else 0."""
        return 1 if self._decoder.getstate()[0] else 0

    def flush(self) -> str:
        """End of stream: whatever is still held is invalid and becomes U+FFFD."""
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Holds back text that may be the start of a stop string; reports full matches."""

    __slots__ = ("_held", "_max_hold", "_stops", "matched")

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._max_hold = max((len(s) for s in self._stops), default=1) - 1
        self._held = ""
        self.matched: str | None = None
        """The stop string that was hit (Anthropic's `stop_sequence` reports it)."""

    @property
    def active(self) -> bool:
        return bool(self._stops)

    def feed(self, text: str) -> tuple[str, bool]:
        """Add `text`; return (text safe to emit now, whether a stop string was hit).

        After a hit the matcher should not be fed again: the generation is over.
        """
        if not self._stops:
            return text, False
        buf = self._held + text
        cut = self._first_match(buf)
        if cut is not None:
            self._held = ""
            return buf[:cut], True
        hold = self._partial_suffix(buf)
        if hold:
            self._held = buf[-hold:]
            return buf[:-hold], False
        self._held = ""
        return buf, False

    def flush(self) -> str:
        """Generation ended for another reason: release what was held back."""
        held, self._held = self._held, ""
        return held

    def _first_match(self, buf: str) -> int | None:
        """Where the earliest stop string starts in `buf` (and remember which one)."""
        best: int | None = None
        for stop in self._stops:
            idx = buf.find(stop)
            if idx != -1 and (best is None or idx < best):
                best = idx
                self.matched = stop
        return best

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that starts some stop string."""
        for size in range(min(len(buf), self._max_hold), 0, -1):
            tail = buf[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0


class TraceLimit:
    """Counts the tokens of a reasoning trace and says when its budget is spent.

    The trace is open from the start (`opened`: the prompt ended with the opening tag) or
    opens when the output starts with `opening` (after white space); output that starts
    otherwise has no trace, and nothing is counted. Inside, each token counts; a trace that
    writes `closing` is done; one that reaches `budget` tokens first is over budget once:
    `feed` returns True for that token, and the engine then writes `closing` itself.
    """

    __slots__ = ("_budget", "_closing", "_opening", "_seen", "_state", "count")

    def __init__(self, budget: int, opening: str, closing: str, *, opened: bool) -> None:
        self._budget, self._opening, self._closing = budget, opening, closing
        self._state = "inside" if opened else "before"
        self._seen = ""
        self.count = 0

    def feed(self, text: str) -> bool:
        """One generated token's text; True when the budget ran out on this token."""
        if self._state == "before":
            self._seen += text
            start = self._seen.lstrip()
            if start.startswith(self._opening):
                self._state, self._seen = "inside", start[len(self._opening) :]
                return self._closed()
            if not self._opening.startswith(start):
                self._state = "done"
            return False
        if self._state != "inside":
            return False
        self.count += 1
        self._seen = (self._seen + text)[-(len(self._closing) + len(text)) :]
        if self._closed():
            return False
        if self.count >= self._budget:
            self._state = "done"
            return True
        return False

    def _closed(self) -> bool:
        if self._closing in self._seen:
            self._state = "done"
            return True
        return False
