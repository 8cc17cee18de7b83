"""Ollama's human-readable formats: sizes, counts, ages, Go durations and borderless tables.

Every function is pure (the current time is passed in), so the tables `ollama list`, `ollama ps`
and `ollama show` print can be checked against golden strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.cells import cell_len

# (threshold, unit) from the largest down: Ollama's HumanBytes uses decimal units.
_BYTE_UNITS = ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "KB"))
_ZERO_TIME_YEAR = 1
_TIMESTAMP = re.compile(r"(?P<base>[^.]+?)(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]\d\d:?\d\d)?$")


def human_bytes(size: int) -> str:
    """`98 MB`, `2.0 GB`, `1.5 KB`, `512 B`: whole numbers from 10 up, else one decimal.

    >>> human_bytes(98_765_432), human_bytes(1_500), human_bytes(2_000_000_000)
    ('98 MB', '1.5 KB', '2 GB')
    """
    for threshold, unit in _BYTE_UNITS:
        if size >= threshold:
            value = size / threshold
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def human_number(count: int) -> str:
    """Parameter counts as `ollama show` prints them: `3.2B`, `134.52M`, `8B`, `22K`.

    >>> human_number(134_515_008), human_number(8_000_000_000), human_number(3_212_749_888)
    ('134.52M', '8B', '3.2B')
    """
    if count >= 10**9:
        value = count / 10**9
        return f"{value:.0f}B" if value == math.floor(value) else f"{value:.1f}B"
    if count >= 10**6:
        value = count / 10**6
        return f"{value:.0f}M" if value == math.floor(value) else f"{value:.2f}M"
    if count >= 10**3:
        return f"{count / 10**3:.0f}K"
    return str(count)


def parse_timestamp(text: str) -> datetime | None:
    """Parse the server's RFC 3339 timestamps (nanosecond fractions included); None if blank."""
    match = _TIMESTAMP.match(text.strip()) if text else None
    if match is None:
        return None
    frac = (match.group("frac") or "")[:6].ljust(6, "0")
    tz = match.group("tz") or "Z"
    tz = "+00:00" if tz == "Z" else tz
    try:
        parsed = datetime.fromisoformat(f"{match.group('base')}.{frac}{tz}")
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """The phrase inside `... ago` / `... from now`, with Ollama's thresholds and roundings."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)  # Go's math.Round: halves away from zero
    return _human_hours(hours, seconds)


def _human_hours(hours: int, seconds: float) -> str:
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600 / 24 / 365)} years"


def human_time(when: str | datetime | None, now: datetime, zero: str = "Never") -> str:
    """`2 minutes ago`, `4 minutes from now`, `Forever` (over 20 years ahead), or `zero`."""
    moment = parse_timestamp(when) if isinstance(when, str) else when
    if moment is None or moment.year <= _ZERO_TIME_YEAR:
        return zero
    delta = (now - moment).total_seconds()
    if int(int(delta / 3600) / (24 * 365)) < -20:
        return "Forever"
    if delta < 0:
        return f"{human_duration(-delta)} from now"
    return f"{human_duration(delta)} ago"


def go_duration(nanoseconds: int) -> str:
    """Go's `time.Duration.String()`: `1.234567891s`, `45.1ms`, `812.5µs`, `1m2.5s`, `0s`.

    >>> go_duration(1_234_567_891), go_duration(45_100_000), go_duration(62_500_000_000)
    ('1.234567891s', '45.1ms', '1m2.5s')
    """
    sign, value = ("-" if nanoseconds < 0 else ""), abs(int(nanoseconds))
    if value == 0:
        return "0s"
    if value < 1_000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return f"{sign}{_fraction(value, 3)}µs"
    if value < 1_000_000_000:
        return f"{sign}{_fraction(value, 6)}ms"
    whole, _, frac = _fraction(value, 9).partition(".")
    total = int(whole)
    hours, minutes, secs = total // 3600, total // 60 % 60, total % 60
    text = f"{secs}.{frac}s" if frac else f"{secs}s"
    if total >= 60:
        text = f"{minutes}m{text}"
    if total >= 3600:
        text = f"{hours}h{text}"
    return sign + text


def _fraction(value: int, digits: int) -> str:
    whole, rest = divmod(value, 10**digits)
    frac = str(rest).zfill(digits).rstrip("0")
    return f"{whole}.{frac}" if frac else str(whole)


# -- tables -------------------------------------------------------------------------------------

DEFAULT_CELL_WIDTH = 30
TABLE_PADDING = "    "


def wrap_cell(text: str, limit: int) -> list[str]:
    """Wrap one paragraph to `limit` columns, minimising raggedness, as Ollama's tables do.

    Words are split at single spaces; a word longer than the limit raises the limit for the
    whole paragraph, so no word is ever broken.
    """
    words = text.replace("\n", " ").split(" ")
    limit = max([limit, *(cell_len(word) for word in words)])
    count = len(words)
    widths = [cell_len(word) for word in words]
    cost = [0] * (count + 1)
    breaks = [count] * (count + 1)
    for start in range(count - 1, -1, -1):
        cost[start], breaks[start] = _best_break(start, widths, limit, cost)
    lines, start = [], 0
    while start < count:
        lines.append(" ".join(words[start : breaks[start]]))
        start = breaks[start]
    return lines


def _best_break(start: int, widths: list[int], limit: int, cost: list[int]) -> tuple[int, int]:
    """Cheapest end for a line starting at `start`: squared slack plus the rest's cost."""
    count = len(widths)
    length = sum(widths[start:]) + (count - start - 1)
    if length <= limit:
        return 0, count
    best, best_end, length = 2**31 - 1, count, widths[start]
    for end in range(start + 1, count):
        slack = limit - length
        candidate = slack * slack + cost[end] + (100_000 if length > limit else 0)
        if candidate < best:
            best, best_end = candidate, end
        length += 1 + widths[end]
    return best, best_end


def _cell_lines(text: str, limit: int) -> list[str]:
    paragraphs = text.split("\n")
    widest = max(cell_len(p) for p in paragraphs)
    limit = min(widest, limit)
    lines: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        if index:
            lines.append(" ")
        lines.extend(wrap_cell(paragraph, limit))
    return lines


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - cell_len(text))


def render_table(
    rows: Sequence[Sequence[str]],
    header: Sequence[str] = (),
    *,
    cell_width: int = DEFAULT_CELL_WIDTH,
) -> str:
    """A left-aligned, borderless table with 4-space padding, byte-for-byte like Ollama's.

    Every cell is followed by the padding (so lines end in spaces), except the header's last
    cell, which is followed by a single space. Long cells wrap at `cell_width`.
    """
    cells = [[_cell_lines(cell, cell_width) for cell in row] for row in rows]
    head = [[h] for h in header]
    columns = max([len(header), *(len(row) for row in rows)], default=0)
    widths = [0] * columns
    for row in [head, *cells]:
        for index, lines in enumerate(row):
            widths[index] = max(widths[index], *(cell_len(line) for line in lines))
    out: list[str] = []
    if header:
        out.append(
            "".join(
                _pad(h, widths[i]) + (" " if i == columns - 1 else TABLE_PADDING)
                for i, h in enumerate(header)
            )
        )
    for row in cells:
        height = max((len(lines) for lines in row), default=1)
        for line_no in range(height):
            out.append(
                "".join(
                    _pad(lines[line_no] if line_no < len(lines) else "  ", widths[i])
                    + TABLE_PADDING
                    for i, lines in enumerate(row)
                )
            )
    return "".join(f"{line}\n" for line in out)
