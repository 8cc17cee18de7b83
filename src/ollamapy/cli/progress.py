"""Ollama's progress display: a stack of spinner lines and per-digest bars on stderr.

The lines are laid out as Ollama lays them out (`pulling 4f659a1e86d7: 45% ▕███   ▏ 900 MB/2.0 GB
38 MB/s 28s`, `writing manifest ⠋`); rich's `Live` redraws them in place on a terminal and, on a
file or pipe, prints the final state once when the display stops (nothing if it is transient).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from ollamapy.cli.format import go_duration, human_bytes

SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MAX_WIDTH = 80
_FRAME_SECONDS = 0.1


@dataclass
class SpinnerLine:
    """A status message with a spinner after it until it stops."""

    message: str
    started: float
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True

    def render(self, now: float, width: int) -> str:
        text = f"{self.message.strip()} " if self.message.strip() else ""
        if not self.stopped:
            text += SPINNER_FRAMES[int((now - self.started) / _FRAME_SECONDS) % 10] + " "
        return text


@dataclass
class BarLine:
    """A byte-counting bar: percent, bar, done/total, rate and time left while running."""

    message: str
    total: int
    completed: int
    started: float
    initial: int = 0
    stopped: bool = False
    _last_change: float = field(default=0.0, repr=False)

    def set(self, completed: int, now: float) -> None:
        self.completed = completed
        self._last_change = now
        if self.total and completed >= self.total:
            self.stopped = True

    def stop(self) -> None:
        self.stopped = True

    def percent(self) -> float:
        if self.total <= 0:
            return 0.0
        return min(100.0, 100.0 * self.completed / self.total)

    def rate(self, now: float) -> float:
        elapsed = now - self.started
        return (self.completed - self.initial) / elapsed if elapsed > 0 else 0.0

    def render(self, now: float, width: int) -> str:
        prefix = f"{self.message.strip()} {self.percent():3.0f}%"
        suffix = self._sizes() + self._speed(now)
        room = max(0, width - len(prefix) - len(suffix) - 5)
        filled = int(room * self.percent() / 100)
        return f"{prefix} ▕{'█' * filled}{' ' * (room - filled)}▏ {suffix}"

    def _sizes(self) -> str:
        total = human_bytes(self.total)
        if self.stopped:
            return f"{total:>6}" + " " * 7
        return f"{human_bytes(self.completed):>6}/{total:<6}"

    def _speed(self, now: float) -> str:
        rate = self.rate(now)
        if self.stopped or rate <= 0:
            return " " * 18
        left = int(max(0, self.total - self.completed) / rate)
        speed = f"{human_bytes(int(rate)):>6}/s"
        return f"  {speed}  {go_duration(left * 1_000_000_000):>6}"


Line = SpinnerLine | BarLine


class ProgressDisplay(AbstractContextManager["ProgressDisplay"]):
    """The lines of one long operation, keyed (a status, a digest) so updates find their line.

    Use as a context manager: leaving it stops every line and draws the final state (or clears
    the display, when `transient`). `clock` is injectable for tests.
    """

    def __init__(
        self,
        console: Console,
        *,
        transient: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.clock = clock
        self.lines: dict[str, Line] = {}
        self._live = Live(
            _Renderable(self),
            console=console,
            transient=transient,
            refresh_per_second=10,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._running = False

    def __enter__(self) -> ProgressDisplay:
        self._live.start()
        self._running = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def width(self) -> int:
        return min(self.console.width, MAX_WIDTH)

    def spinner(self, message: str, key: str | None = None) -> SpinnerLine:
        """Add (or find) the spinner line for `key` (default: the message itself)."""
        key = message if key is None else key
        line = self.lines.get(key)
        if not isinstance(line, SpinnerLine):
            line = SpinnerLine(message, self.clock())
            self.lines[key] = line
        self._refresh()
        return line

    def bar(self, key: str, message: str, total: int, completed: int = 0) -> BarLine:
        """Add (or find) the bar for `key`; a found bar gets `total` updated."""
        line = self.lines.get(key)
        if not isinstance(line, BarLine):
            line = BarLine(message, total, completed, self.clock(), initial=completed)
            self.lines[key] = line
        line.total = total or line.total
        line.set(completed, self.clock())
        return line

    def stop_spinners(self) -> None:
        for line in self.lines.values():
            if isinstance(line, SpinnerLine):
                line.stop()

    def stop(self) -> None:
        """Stop every line and draw the final state; idempotent."""
        if not self._running:
            return
        for line in self.lines.values():
            line.stop()
        self._running = False
        self._live.stop()
        if self.lines and not self._live.transient and not self.console.is_terminal:
            self.console.file.write("\n")  # a log's next line must not join the last status

    def _refresh(self) -> None:
        if self._running:
            self._live.refresh()

    def render(self) -> RenderableType:
        now = self.clock()
        width = self.width
        return Group(*(Text(line.render(now, width), no_wrap=True) for line in self.lines.values()))


class _Renderable:
    """Lets `Live` ask the display for a fresh rendering at every refresh."""

    def __init__(self, display: ProgressDisplay) -> None:
        self.display = display

    def __rich__(self) -> RenderableType:
        return self.display.render()


def spinner(console: Console, message: str = "") -> ProgressDisplay:
    """A transient display with one spinner: what Ollama shows while a model loads."""
    display = ProgressDisplay(console, transient=True)
    display.spinner(message, key="")
    return display
