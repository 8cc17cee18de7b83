"""From a request and its model to the exact prompt text the runner evaluates.

The rules themselves live in `ollamapy.prompt` (pure); this module checks what the model
supports, converts wire messages, and supplies token counting from the loaded runner.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamapy import gguf
from ollamapy import prompt as rules
from ollamapy.api.types import ChatRequest, GenerateRequest
from ollamapy.api.types import Message as WireMessage
from ollamapy.errors import BadRequestError
from ollamapy.server.resolved import ResolvedModel
from ollamapy.template import Template

if TYPE_CHECKING:
    from ollamapy.server.inference import Prepared

ROLES = frozenset({"system", "user", "assistant", "tool"})
FALLBACK_TEMPLATE = "{{ .Prompt }}"

CountTokens = Callable[[str], Coroutine[Any, Any, list[int]]]
Detokenize = Callable[[Sequence[int]], Awaitable[str]]


def template_of(model: ResolvedModel, override: str | None = None) -> Template:
    return Template.parse(override or model.template or FALLBACK_TEMPLATE, "template")


# ----------------------------------------------------------------------------- checks


@functools.lru_cache(maxsize=64)
def _has_pooling(path: Path) -> bool:
    """Whether a model file declares a pooling type (blobs never change: cached by path)."""
    try:
        return gguf.read_gguf(path, keep_arrays=0).pooling_type is not None
    except Exception:  # not readable as GGUF: let the runner report it
        return False


def check_completion(model: ResolvedModel, action: str) -> None:
    """An embedding-only model (one whose GGUF has a pooling type) cannot generate."""
    if model.model_path is not None and _has_pooling(model.model_path):
        raise BadRequestError(f'"{model.name.display}" does not support {action}')


def check_generate(model: ResolvedModel, body: GenerateRequest) -> None:
    """Refuse, up front, what this model cannot do (Ollama's 400s)."""
    check_completion(model, "generate")
    template = template_of(model, body.template)
    if body.suffix and not template.uses("Suffix") and not body.raw:
        raise BadRequestError(f"registry.ollama.ai/library/{body.model} does not support insert")
    _check_images(model, body.images)
    _check_think(model, template, body.think, body.model)


def check_chat(model: ResolvedModel, body: ChatRequest) -> None:
    check_completion(model, "chat")
    template = template_of(model)
    for message in body.messages:
        if message.role not in ROLES:
            raise BadRequestError(f"invalid role: {message.role!r}")
        _check_images(model, message.images)
    if body.tools and not template.uses("Tools"):
        raise BadRequestError(f"registry.ollama.ai/library/{body.model} does not support tools")
    _check_think(model, template, body.think, body.model)


def _check_images(model: ResolvedModel, images: list[str] | None) -> None:
    if not images:
        return
    if not model.projectors:
        raise BadRequestError(f"model '{model.name.display}' does not support images")
    for image in images:
        decode_image(image)


def _check_think(model: ResolvedModel, template: Template, think: object, name: str) -> None:
    if think not in (None, False) and not template.uses("Think"):
        raise BadRequestError(f'"{name}" does not support thinking')


def decode_image(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("invalid image data: images must be base64-encoded") from None


def image_count(body: ChatRequest) -> int:
    return sum(len(m.images or []) for m in body.messages)


# ----------------------------------------------------------------------------- messages


def to_prompt_message(message: WireMessage | dict[str, Any]) -> rules.Message:
    if isinstance(message, dict):
        return rules.Message(str(message.get("role", "")), str(message.get("content", "")))
    return rules.Message(
        role=message.role,
        content=message.content,
        images=tuple(decode_image(i) for i in message.images or []),
        tool_calls=tuple(
            rules.ToolCall(call.function.name, call.function.arguments, call.id or "")
            for call in message.tool_calls or []
        ),
        tool_name=message.tool_name or "",
        thinking=message.thinking or "",
    )


def _think(value: object) -> rules.Think:
    return value if isinstance(value, bool | str) else None


# ----------------------------------------------------------------------------- rendering


async def render_chat(
    prepared: Prepared, body: ChatRequest, *, count_tokens: CountTokens | None
) -> str:
    """The chat prompt, truncated to num_ctx by dropping the oldest turns (Ollama's rule)."""
    model = prepared.model
    history = [to_prompt_message(m) for m in model.messages]
    history += [to_prompt_message(m) for m in body.messages]
    messages = rules.with_model_system(history, model.system)
    build = rules.build_chat_prompt
    counter = _sync_counter(count_tokens, prepared.load.options.num_ctx)
    result = await asyncio.to_thread(
        build,
        template_of(model),
        messages,
        num_ctx=prepared.load.options.num_ctx,
        count_tokens=counter,
        tools=body.tools,
        think=_think(body.think),
        truncate=count_tokens is not None,
    )
    return result.text


async def render_generate(
    prepared: Prepared, body: GenerateRequest, *, detokenize: Detokenize | None
) -> str:
    """The generate prompt: raw as given, else templated; `context` detokenized in front."""
    prefix = ""
    if body.context and detokenize is not None:
        prefix = await detokenize(body.context)
    if body.raw:
        return prefix + body.prompt
    model = prepared.model
    result = rules.build_generate_prompt(
        template_of(model, body.template),
        body.prompt,
        num_ctx=prepared.load.options.num_ctx,
        count_tokens=len,
        system=body.system,
        model_system=model.system,
        model_messages=[to_prompt_message(m) for m in model.messages],
        images=[decode_image(i) for i in body.images or []],
        suffix=body.suffix or "",
        think=_think(body.think),
        has_context=bool(body.context),
        truncate=False,
    )
    return prefix + result.text


def _sync_counter(count_tokens: CountTokens | None, num_ctx: int) -> Callable[[str], int]:
    """Bridge the runner's async tokenizer into the pure (sync) truncation rule.

    The rule runs in a worker thread and only asks "does this fit in num_ctx?". Every token
    covers at least one byte of text, plus at most a BOS and an EOS, so a text whose byte
    length + 2 fits needs no exact count: that bound is returned without a round trip to
    the runner. Only texts that might not fit are tokenized (on the event loop).
    """
    if count_tokens is None:
        return len
    loop = asyncio.get_running_loop()

    def count(text: str) -> int:
        upper_bound = len(text.encode()) + 2
        if upper_bound <= num_ctx:
            return upper_bound
        return len(asyncio.run_coroutine_threadsafe(count_tokens(text), loop).result())

    return count
