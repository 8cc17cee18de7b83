"""Writing a streamed answer to the terminal: word wrap, thinking blocks and `--verbose` stats.

Word wrap works as Ollama's does on a stream: characters are printed as they arrive; when a
line would pass the terminal width minus 5, the cursor backs up over the word in progress,
clears it and reprints it on the next line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from rich.cells import cell_len

from ollamapy.cli.format import go_duration

GREY = "\x1b[38;5;245m"
BOLD = "\x1b[1m"
RESET = "\x1b[0m"
THINKING_OPEN = "Thinking...\n"
THINKING_CLOSE = "...done thinking.\n\n"


@dataclass
class ResponseWriter:
    """Prints answer text to `out`, wrapping words when `wrap` and the terminal is wide enough.

    `width` is asked at every write, so a resized terminal is followed.
    """

    out: TextIO
    wrap: bool
    width: Callable[[], int]
    plain: bool = False
    line_length: int = 0
    word: str = ""
    thinking: bool = False
    wrote: bool = False
    ends_line: bool = True

    def write(self, text: str) -> None:
        if not text:
            return
        self.wrote = True
        self.ends_line = text.endswith("\n")
        width = self.width()
        if not self.wrap or width < 10:
            self.out.write(self.word + text)
            self.word = ""
        else:
            for char in text:
                self._put(char, width)
        self.out.flush()

    def _put(self, char: str, width: int) -> None:
        char_width = cell_len(char)
        if self.line_length + 1 > width - 5:
            if cell_len(self.word) > width - 10:
                self.out.write(self.word + char)
                self.word, self.line_length = "", 0
                return
            if self.word:
                self.out.write(f"\x1b[{cell_len(self.word)}D")
            self.out.write(f"\x1b[K\n{self.word}{char}")
            self.line_length = cell_len(self.word) + char_width
            return
        self.out.write(char)
        self.line_length += char_width
        if char_width >= 2 or char in " \t":
            self.word = ""
        elif char in "\r\n":
            self.word, self.line_length = "", 0
        else:
            self.word += char

    def write_thinking(self, text: str) -> None:
        """Thinking text, opened by `Thinking...` and shown in grey on a terminal."""
        if not text:
            return
        if not self.thinking:
            self.out.write(THINKING_OPEN if self.plain else f"{GREY}{BOLD}{THINKING_OPEN}{RESET}")
            if not self.plain:
                self.out.write(GREY)
            self.thinking = True
        self.write(text)

    def end_thinking(self) -> None:
        """Close an open thinking block before the answer starts."""
        if not self.thinking:
            return
        self.thinking = False
        closing = THINKING_CLOSE if self.plain else f"{GREY}{BOLD}{THINKING_CLOSE}{RESET}"
        self.out.write(("" if self.ends_line else "\n") + closing)
        self.line_length, self.word = 0, ""


# (label, metric key, unit) in Ollama's order; durations are nanoseconds on the wire.
_STAT_LINES: tuple[tuple[str, str], ...] = (
    ("total duration:", "total_duration"),
    ("load duration:", "load_duration"),
    ("prompt eval count:", "prompt_eval_count"),
    ("prompt eval duration:", "prompt_eval_duration"),
    ("eval count:", "eval_count"),
    ("eval duration:", "eval_duration"),
)
_RATES = {"prompt_eval_duration": "prompt_eval_count", "eval_duration": "eval_count"}


def stats_summary(metrics: Mapping[str, Any]) -> str:
    """The block `--verbose` prints after an answer, laid out like Ollama's `Summary()`."""
    lines: list[str] = []
    for label, key in _STAT_LINES:
        value = int(metrics.get(key) or 0)
        if value <= 0:
            continue
        if key.endswith("_count"):
            lines.append(f"{label:<22}{value} token(s)")
            continue
        lines.append(f"{label:<22}{go_duration(value)}")
        if count_key := _RATES.get(key):
            rate = int(metrics.get(count_key) or 0) / (value / 1e9)
            rate_label = label.replace("duration", "rate")
            lines.append(f"{rate_label:<22}{rate:.2f} tokens/s")
    return "".join(f"{line}\n" for line in lines)
