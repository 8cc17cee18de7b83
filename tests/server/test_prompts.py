"""The server's prompt glue: token counting for truncation asks the runner only when needed."""

from __future__ import annotations

import asyncio

from ollamapy.server.prompts import _sync_counter


async def test_counter_skips_the_runner_when_the_byte_bound_fits() -> None:
    asked: list[str] = []

    async def tokenize(text: str) -> list[int]:
        asked.append(text)
        return [0] * (len(text) // 4)

    count = _sync_counter(tokenize, num_ctx=100)
    short, long = "x" * 98, "y" * 400
    assert await asyncio.to_thread(count, short) == 100  # the bound: 98 bytes + BOS/EOS
    assert asked == []
    assert await asyncio.to_thread(count, long) == 100  # exact count from the runner
    assert asked == [long]


async def test_counter_bound_counts_bytes_not_characters() -> None:
    async def tokenize(text: str) -> list[int]:
        return [0]

    count = _sync_counter(tokenize, num_ctx=10)
    assert await asyncio.to_thread(count, "ééé") == 8  # 6 bytes + 2
    assert await asyncio.to_thread(count, "ééééé") == 1  # 10 bytes + 2 > 10: asks the runner
