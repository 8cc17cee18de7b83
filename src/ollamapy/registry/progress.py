"""Turn a long-running coroutine into a stream of progress events.

Routes stream progress as NDJSON; the work (downloads, uploads) runs as a task while
the generator samples its progress every `interval` seconds. Closing or cancelling the
generator (a client that disconnects) cancels the task, which leaves partial downloads
on disk to resume later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

Event = dict[str, Any]


def transfer_event(status: str, digest: str, total: int, completed: int) -> Event:
    """Ollama's ProgressResponse: `total` and `completed` omitted when zero (omitempty)."""
    event: Event = {"status": status, "digest": digest}
    if total:
        event["total"] = total
    if completed:
        event["completed"] = completed
    return event


async def drive(
    work: Coroutine[Any, Any, None], snapshot: Callable[[], Event], interval: float
) -> AsyncIterator[Event]:
    """Run `work`, yielding `snapshot()` whenever it changes, and once more at the end."""
    task = asyncio.ensure_future(work)
    last: Event | None = None
    try:
        while True:
            done, _pending = await asyncio.wait({task}, timeout=interval)
            if done:
                task.result()
            event = snapshot()
            if event != last:
                last = event
                yield event
            if done:
                return
    finally:
        await cancel_all([task])


async def first_error(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines together; the first failure cancels the rest and is re-raised."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        for future in asyncio.as_completed(tasks):
            await future
    finally:
        await cancel_all(tasks)


async def cancel_all(tasks: Iterable[asyncio.Future[None]]) -> None:
    """Cancel unfinished tasks and wait until every one has finished its cleanup.

    A task may be cancelled again while it waits here (Starlette's cancel scope keeps
    cancelling on a client disconnect); it keeps waiting anyway, because a download's
    cleanup must finish before its file descriptor closes, then re-raises the cancel.
    """
    tasks = list(tasks)
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    interrupted = False
    while not all(task.done() for task in pending):
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            interrupted = True
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: the first error is reported, the rest not "lost"
    if interrupted:
        raise asyncio.CancelledError
