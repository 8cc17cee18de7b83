"""How the CPU cores are shared between runners that are busy at the same time.

Each runner process decodes with a team of threads. Left alone, every runner takes every
core, so two models generating together run twice the threads the machine has and their
teams fight (measured on 2 cores: 0.32 of the machine's capacity in all). Instead the
scheduler gives each busy runner a share of the cores, so that the threads of all busy
runners add up to the cores; an idle runner keeps its last count and gets its share again
before its next request runs. A user's explicit `num_thread` is an upper bound.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def physical_cores() -> int:
    """The machine's physical cores (what a runner decodes with by default, as Ollama's
    runners do); the logical CPU count when /proc/cpuinfo says nothing."""
    cores: set[tuple[str, str]] = set()
    physical = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                physical = value.strip()
            elif key.strip() == "core id":
                cores.add((physical, value.strip()))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1


def launched_threads(cores: int, cap: int) -> int:
    """The threads a runner started with `num_thread` = `cap` (0: none given) decodes with."""
    return cap if cap > 0 else cores


def shares(cores: int, busy: Sequence[tuple[K, int]]) -> dict[K, int]:
    """The thread count of each busy runner: `busy` lists (runner, cap), cap 0 for none.

    The cores are split evenly; a runner capped below its even share keeps its cap and the
    rest goes to the others; a remainder goes to the runners listed first. Every runner
    gets at least one thread, even when more runners than cores are busy.
    """
    result: dict[K, int] = {}
    left = list(busy)
    free = cores
    while left:  # water-filling: settle the capped runners below the even share first
        even = free // len(left)
        capped = [(key, cap) for key, cap in left if 0 < cap <= max(even, 1)]
        if not capped:
            break
        for key, cap in capped:
            result[key] = cap
            free -= cap
        left = [(key, cap) for key, cap in left if key not in result]
    if left:
        even, extra = divmod(max(free, 0), len(left))
        for index, (key, cap) in enumerate(left):
            n = max(1, even + (1 if index < extra else 0))
            result[key] = min(n, cap) if cap > 0 else n
    return result
