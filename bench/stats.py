"""Summaries of repeated measurements and the ratios between them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

Summary = dict[str, Any]


def summarize(samples: Iterable[float | None]) -> Summary | None:
    """Median, min, max and the raw samples; None when no sample was taken."""
    values = [float(v) for v in samples if v is not None]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "samples": values,
    }


def median(summary: Summary | None) -> float | None:
    """The median of a summary, tolerating a missing one."""
    return None if summary is None else float(summary["median"])


def ratio(ours: float | None, ref: float | None) -> float | None:
    """ours / ref, or None when either side is missing or ref is zero."""
    if ours is None or ref is None or ref == 0:
        return None
    return ours / ref


def rate(count: float | None, duration_s: float | None) -> float | None:
    """count / seconds, or None for a missing or non-positive duration."""
    if count is None or duration_s is None or duration_s <= 0:
        return None
    return count / duration_s
