"""Anthropic Messages API compatibility, as pure translation: Anthropic requests -> native
chat requests, native events -> Anthropic messages and stream events, failures -> Anthropic
error objects. Nothing here runs a model; `ollamapy.server.anthropic_routes` feeds these
converters from the one native inference path.
"""

from ollamapy.anthropic.errors import error_for, error_object, error_type, status_of
from ollamapy.anthropic.requests import thinking_budget, to_chat_request
from ollamapy.anthropic.responses import (
    MessageMeta,
    MessageStream,
    collect_message,
    message_events,
    stop_reason,
    usage,
)
from ollamapy.anthropic.stream import SSE_MEDIA_TYPE, sse_body, sse_event
from ollamapy.anthropic.wire import CountTokensRequest, MessagesRequest

__all__ = [
    "SSE_MEDIA_TYPE",
    "CountTokensRequest",
    "MessageMeta",
    "MessageStream",
    "MessagesRequest",
    "collect_message",
    "error_for",
    "error_object",
    "error_type",
    "message_events",
    "sse_body",
    "sse_event",
    "status_of",
    "stop_reason",
    "thinking_budget",
    "to_chat_request",
    "usage",
]
