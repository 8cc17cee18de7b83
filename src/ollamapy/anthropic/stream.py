"""Server-sent events, Anthropic's framing: `event: <name>\\ndata: <json>\\n\\n` per event.

Anthropic's SDKs dispatch on the `event:` line (and skip events without one), so every
event names itself there and in its payload's `type`. An error after the first event can
only be reported in-band: an `error` event with an Anthropic error object, after which
the stream ends without `message_stop`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson

from ollamapy.anthropic.errors import error_for
from ollamapy.anthropic.responses import StreamEvent, aclose

log = logging.getLogger(__name__)

SSE_MEDIA_TYPE = "text/event-stream"


def sse_event(event: StreamEvent) -> bytes:
    name, payload = event
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def sse_body(first: StreamEvent, rest: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    """The SSE byte stream for a first event (already pulled) and the events after it."""
    yield sse_event(first)
    try:
        async for event in rest:
            yield sse_event(event)
    except Exception as exc:  # after the first byte, the status is already sent
        log.exception("Anthropic stream failed")
        yield sse_event(("error", error_for(exc)))
    finally:
        await aclose(rest)
