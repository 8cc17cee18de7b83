"""Server-sent events, OpenAI's streaming framing: `data: {json}\\n\\n` … `data: [DONE]\\n\\n`.

An error before the first chunk is an HTTP status (the route's business); one after it can
only be reported in-band, as an SSE event carrying an OpenAI error object, after which the
stream stops without `[DONE]` so clients see it failed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ollamapy.openai.errors import error_for

log = logging.getLogger(__name__)

Event = dict[str, Any]

SSE_DONE = b"data: [DONE]\n\n"
SSE_MEDIA_TYPE = "text/event-stream"


def sse_event(payload: Event) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


async def sse_body(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """The SSE byte stream for a first chunk (already pulled) and the chunks after it."""
    yield sse_event(first)
    try:
        async for chunk in rest:
            yield sse_event(chunk)
    except Exception as exc:  # after the first byte, the status is already sent
        log.exception("OpenAI stream failed")
        yield sse_event(error_for(exc))
        return
    finally:
        await aclose(rest)
    yield SSE_DONE


async def aclose(events: AsyncIterator[Any]) -> None:
    """Close an event stream early, so the native path releases its runner at once."""
    close: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if close is not None:
        await close()
