"""How the engine thread hands events to the event loop: one wake-up per step, not per token."""

from __future__ import annotations

import asyncio
import threading

from ollamapy.runner import protocol as p
from ollamapy.runner.channel import Channel, Outbox
from ollamapy.types.logprobs import TokenLogprob

DONE = p.CompletionDone(
    done_reason="stop",
    prompt_eval_count=1,
    prompt_eval_duration=1,
    eval_count=2,
    eval_duration=1,
    tokens=[1, 2, 3],
)


class CountingLoop:
    """Wraps a loop, counting the thread-safe callbacks (the cross-thread wake-ups)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wakeups = 0

    def call_soon_threadsafe(self, callback: object, *args: object) -> object:
        self.wakeups += 1
        return self.loop.call_soon_threadsafe(callback, *args)  # type: ignore[arg-type]


def run_in_engine_thread(fn: object) -> None:
    thread = threading.Thread(target=fn)  # type: ignore[arg-type]
    thread.start()
    thread.join()


def test_events_wait_for_the_flush_and_many_streams_share_one_wakeup() -> None:
    async def scenario() -> None:
        loop = CountingLoop(asyncio.get_running_loop())
        outbox = Outbox(loop)  # type: ignore[arg-type]
        channels = [Channel(outbox) for _ in range(4)]

        def step() -> None:
            for index, channel in enumerate(channels):
                channel.put(p.CompletionChunk(f"token {index}"))

        run_in_engine_thread(step)
        assert loop.wakeups == 0  # nothing leaves before the engine flushes
        run_in_engine_thread(outbox.flush)
        assert loop.wakeups == 1  # one wake-up for four streams
        batches = [await asyncio.wait_for(c.next_batch(), 5) for c in channels]
        assert [[e.to_json() for e in b] for b in batches] == [
            [{"content": f"token {i}"}] for i in range(4)
        ]

    asyncio.run(scenario())


def test_a_pending_wakeup_is_not_asked_for_again() -> None:
    async def scenario() -> None:
        loop = CountingLoop(asyncio.get_running_loop())
        outbox = Outbox(loop)  # type: ignore[arg-type]
        channel = Channel(outbox)

        def two_steps() -> None:
            channel.put(p.CompletionChunk("a"))
            outbox.flush()
            channel.put(p.CompletionChunk("b"))  # the first wake-up is still pending
            outbox.flush()

        run_in_engine_thread(two_steps)
        assert loop.wakeups == 1
        batch = await asyncio.wait_for(channel.next_batch(), 5)
        assert [e.to_json() for e in batch] == [{"content": "a"}, {"content": "b"}]

    asyncio.run(scenario())


def test_the_last_event_ends_the_writers_pause() -> None:
    async def scenario() -> None:
        outbox = Outbox(asyncio.get_running_loop())
        channel = Channel(outbox)

        def finish() -> None:
            channel.put(p.CompletionChunk("a"))
            channel.put(DONE)
            outbox.flush()

        run_in_engine_thread(finish)
        first = await asyncio.wait_for(channel.next_batch(), 5)
        assert first[-1] is DONE
        await asyncio.wait_for(channel.pause(60), 5)  # returns at once: the stream is over
        assert channel.finished.is_set()

    asyncio.run(scenario())


def test_a_pause_lasts_its_time_unless_the_last_event_arrives() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        outbox = Outbox(loop)
        channel = Channel(outbox)
        start = loop.time()
        await channel.pause(0.05)
        assert loop.time() - start >= 0.04

        def finish() -> None:
            channel.put(DONE)
            outbox.flush()

        start = loop.time()
        loop.call_later(0.05, lambda: threading.Thread(target=finish).start())
        await asyncio.wait_for(channel.pause(60), 5)  # ended by the done event
        assert loop.time() - start < 5

    asyncio.run(scenario())


def test_held_text_leaves_in_one_chunk_with_the_last_event_and_one_wakeup() -> None:
    """A request that is not streamed: steps queue nothing the loop must hear of."""

    async def scenario() -> None:
        loop = CountingLoop(asyncio.get_running_loop())
        outbox = Outbox(loop)  # type: ignore[arg-type]
        channel = Channel(outbox, hold_text=True)

        def generate() -> None:
            for piece in ("a", "b", "c"):
                channel.put(p.CompletionChunk(piece, (TokenLogprob(piece, -1.0),)))
                outbox.flush()  # the engine flushes before every decode

        def finish() -> None:
            channel.put(DONE)
            outbox.flush()

        run_in_engine_thread(generate)
        assert loop.wakeups == 0
        run_in_engine_thread(finish)
        assert loop.wakeups == 1
        batch = await asyncio.wait_for(channel.next_batch(), 5)
        logprobs = tuple(TokenLogprob(piece, -1.0) for piece in "abc")
        assert batch == [p.CompletionChunk("abc", logprobs), DONE]
        assert channel.finished.is_set()

    asyncio.run(scenario())


def test_held_text_comes_before_an_error_too() -> None:
    async def scenario() -> None:
        outbox = Outbox(asyncio.get_running_loop())
        channel = Channel(outbox, hold_text=True)
        failure = p.CompletionError("the runner is shutting down")

        def fail() -> None:
            channel.put(p.CompletionChunk("partial"))
            channel.put(failure)
            outbox.flush()

        run_in_engine_thread(fail)
        batch = await asyncio.wait_for(channel.next_batch(), 5)
        assert batch == [p.CompletionChunk("partial"), failure]

    asyncio.run(scenario())


def test_a_done_with_no_text_adds_no_empty_chunk() -> None:
    async def scenario() -> None:
        outbox = Outbox(asyncio.get_running_loop())
        channel = Channel(outbox, hold_text=True)

        def finish() -> None:
            channel.put(DONE)
            outbox.flush()

        run_in_engine_thread(finish)
        assert await asyncio.wait_for(channel.next_batch(), 5) == [DONE]

    asyncio.run(scenario())


def test_a_flush_after_the_loop_closed_raises_for_the_engine_to_log() -> None:
    loop = asyncio.new_event_loop()
    outbox = Outbox(loop)
    Channel(outbox).put(p.CompletionChunk("late"))
    loop.close()
    try:
        outbox.flush()
    except RuntimeError:
        pass
    else:
        raise AssertionError("flush on a closed loop should raise")
