"""OpenAI compatibility, as pure translation: OpenAI requests → native requests, native
events → OpenAI objects. Nothing here runs a model; `ollamapy.server.openai_routes` feeds
these converters from the one native inference path.
"""

from ollamapy.openai.embeddings import embedding_list, floats_to_base64
from ollamapy.openai.errors import error_for, error_object, error_type, status_of
from ollamapy.openai.models import model_list, model_object
from ollamapy.openai.requests import to_chat_request, to_embed_request, to_generate_request
from ollamapy.openai.responses import (
    ChatStream,
    ResponseMeta,
    chat_chunks,
    collect_chat,
    collect_completion,
    completion_chunks,
    usage,
)
from ollamapy.openai.stream import SSE_DONE, SSE_MEDIA_TYPE, sse_body, sse_event
from ollamapy.openai.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    include_usage,
)

__all__ = [
    "SSE_DONE",
    "SSE_MEDIA_TYPE",
    "ChatCompletionRequest",
    "ChatStream",
    "CompletionRequest",
    "EmbeddingRequest",
    "ResponseMeta",
    "chat_chunks",
    "collect_chat",
    "collect_completion",
    "completion_chunks",
    "embedding_list",
    "error_for",
    "error_object",
    "error_type",
    "floats_to_base64",
    "include_usage",
    "model_list",
    "model_object",
    "sse_body",
    "sse_event",
    "status_of",
    "to_chat_request",
    "to_embed_request",
    "to_generate_request",
    "usage",
]
