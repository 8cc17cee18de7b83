"""Go-style durations, as `keep_alive` and `OLLAMA_KEEP_ALIVE` accept them.

Ollama takes a number of seconds or a Go duration string (`"5m"`, `"1h30m"`, `"-1s"`);
any negative value means "keep loaded forever". Plain digit strings are seconds.
"""

from __future__ import annotations

import math
import re

from ollamapy.errors import BadRequestError

FOREVER = math.inf
"""The value a negative keep_alive stands for."""

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: object) -> float:
    """Return the duration in seconds (`FOREVER` for a negative one).

    >>> parse_duration("1h30m"), parse_duration(300), parse_duration("-1")
    (5400.0, 300.0, inf)
    """
    if isinstance(value, bool):
        raise BadRequestError(f"invalid duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise BadRequestError(f"invalid duration: {value!r}")
    if math.isnan(seconds):
        raise BadRequestError(f"invalid duration: {value!r}")
    return FOREVER if seconds < 0 else seconds


def _parse_text(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if re.fullmatch(r"\d+(\.\d+)?", body):
        return sign * float(body)
    if not body:
        raise BadRequestError(f"time: invalid duration {text!r}")
    position, total = 0, 0.0
    for match in _PART_RE.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(body):
        raise BadRequestError(f"time: invalid duration {text!r}")
    return sign * total


def format_go_duration(seconds: float) -> str:
    """Render seconds as Go's `time.Duration.String()` does for whole seconds (`5m0s`)."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
