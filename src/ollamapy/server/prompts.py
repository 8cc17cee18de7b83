"""From a request and its model to the exact prompt the runner evaluates.

The rules live in `ollamapy.chat` (pure); this module checks what the model supports,
converts wire messages once, and supplies the loaded runner's tokenizer for fitting the
conversation into `num_ctx` (in a worker thread: rendering a long conversation is CPU work
that would otherwise stall every other stream on the event loop).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ollamapy.api.types import ChatRequest, GenerateRequest
from ollamapy.chat import prompt as rules
from ollamapy.chat import toolchoice
from ollamapy.chat.harmony import FAMILIES as HARMONY_FAMILIES
from ollamapy.chat.harmony import HarmonyParser, harmony_level, uses_harmony
from ollamapy.chat.messages import (
    Message,
    Prompt,
    Think,
    check_roles,
    decode_image,
    from_wire,
)
from ollamapy.chat.thinking import THINK_TAGS, ThinkingTags, tags_for_text, without_old_traces
from ollamapy.chat.tools import ToolCallParser
from ollamapy.errors import BadRequestError
from ollamapy.llm import Runner, ToolCallGrammar
from ollamapy.server import loads
from ollamapy.server.completion import Prepared, tokenizer_of
from ollamapy.server.resolved import ResolvedModel
from ollamapy.template import Template

IMAGE_TOKENS = 768
"""What one image costs in the context when fitting a conversation (Ollama's estimate)."""


def template_of(model: ResolvedModel, override: str | None = None) -> Template:
    """The model's template (or a request's override), parsed once per template text."""
    return rules.parse_template(override or model.template)


# ----------------------------------------------------------------------------- checks


def _has_pooling(path: Path) -> bool:
    """Whether a model file declares a pooling type (an embedding model)."""
    header = loads.model_header(path)
    return header is not None and header.pooling_type is not None


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
    """Refuse, up front, what this model cannot do; images are decoded (and refused if
    they are not base64) once, with the rest of the conversation, by `chat_conversation`."""
    check_completion(model, "chat")
    template = template_of(model)
    check_roles(body.messages)
    if any(message.images for message in body.messages):
        _check_vision(model)
    if body.tools and not template.uses("Tools"):
        raise BadRequestError(f"registry.ollama.ai/library/{body.model} does not support tools")
    _check_think(model, template, body.think, body.model)
    if tool_choice(body).forced and body.format:
        raise BadRequestError("format cannot be combined with a tool_choice that forces a call")
    tool_grammar(model, body)  # a schema the grammar cannot enforce is a 400 now


def chat_conversation(model: ResolvedModel, body: ChatRequest) -> tuple[Message, ...]:
    """The model's MESSAGEs then the request's, as chat messages (the Modelfile's SYSTEM
    first unless the request starts with one)."""
    messages = [from_wire(m) for m in model.messages] + [from_wire(m) for m in body.messages]
    messages = rules.with_model_system(messages, model.system)
    if model.config.model_family == "qwen3" or model.name.model == "deepseek-r1":
        messages = without_old_traces(messages, THINK_TAGS)  # Ollama's filterThinkTags
    return tuple(messages)


def _check_vision(model: ResolvedModel) -> None:
    if not model.projectors:
        raise BadRequestError(f"model '{model.name.display}' does not support images")


def _check_images(model: ResolvedModel, images: list[str] | None) -> None:
    if not images:
        return
    _check_vision(model)
    for image in images:
        decode_image(image)


THINK_LEVELS = ("high", "medium", "low", "max")
"""The levels `think` accepts besides true/false (Ollama's api.ThinkValue)."""


def _check_think(model: ResolvedModel, template: Template, think: object, name: str) -> None:
    """A level Ollama does not know is its 400; so is thinking asked of a model that
    cannot think (`think: false` is always accepted)."""
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise BadRequestError(
            f'invalid think value: "{think}" '
            '(must be "high", "medium", "low", "max", true, or false)'
        )
    if think not in (None, False) and not can_think(model, template):
        raise BadRequestError(f'"{name}" does not support thinking')


def thinking_tags(template: Template) -> ThinkingTags | None:
    """The template's thinking tags; a template with them makes the model thinking-capable."""
    return tags_for_text(template.text)


def is_harmony(model: ResolvedModel, template: Template) -> bool:
    return uses_harmony(model.config.model_family, template.text)


def can_think(model: ResolvedModel, template: Template) -> bool:
    """Thinking tags in the template, or a gpt-oss model (Ollama's capabilities)."""
    return model.config.model_family in HARMONY_FAMILIES or thinking_tags(template) is not None


def effective_think(model: ResolvedModel, template: Template, think: object) -> Think:
    """`think` as the template sees it: unset on a thinking-capable model means on
    (Ollama's default); harmony has no `max` (it reads as `high`)."""
    value = _think(think)
    if is_harmony(model, template):
        value = harmony_level(value)
    if value is None and can_think(model, template):
        return True
    return value


OutputSplit = ThinkingTags | HarmonyParser | None


def output_split(
    model: ResolvedModel, template: Template, think: object, last: Message | None
) -> OutputSplit:
    """How the output is split: harmony's channels always (as Ollama's built-in parser);
    otherwise the template's tags, only when thinking is on (with `think: false`, Ollama
    passes whatever the model writes through as content)."""
    if is_harmony(model, template):
        return HarmonyParser(last)
    if effective_think(model, template, think) in (None, False):
        return None
    return thinking_tags(template)


def chat_thinking(prepared: Prepared, body: ChatRequest) -> OutputSplit:
    last = prepared.conversation[-1] if prepared.conversation else None
    return output_split(prepared.model, template_of(prepared.model), body.think, last)


def generate_thinking(prepared: Prepared, body: GenerateRequest) -> OutputSplit:
    template = template_of(prepared.model, body.template)
    if body.raw and is_harmony(prepared.model, template):
        return None  # Ollama runs no built-in parser on raw output
    return output_split(prepared.model, template, body.think, None)


def image_count(body: ChatRequest) -> int:
    return sum(len(m.images or []) for m in body.messages)


def _think(value: object) -> Think:
    return value if isinstance(value, bool | str) else None


def tool_choice(body: ChatRequest) -> toolchoice.ToolChoice:
    """The request's `tool_choice` and `parallel_tool_calls`, checked (400s)."""
    return toolchoice.parse_tool_choice(body.tool_choice, body.parallel_tool_calls, body.tools)


def offered_tools(body: ChatRequest) -> list[dict[str, Any]] | None:
    """The tools the template sees: none with `tool_choice: "none"`."""
    return None if tool_choice(body).mode == "none" else body.tools


def tool_parser(prepared: Prepared, body: ChatRequest) -> ToolCallParser | None:
    """The tool-call parser of a chat request with tools (None without tools)."""
    template = template_of(prepared.model)
    tools = offered_tools(body)
    if not tools or is_harmony(prepared.model, template):
        return None  # harmony's calls come from its own channels
    limit = tool_choice(body).max_calls
    return ToolCallParser.for_template(template, tools, limit)


def tool_grammar(model: ResolvedModel, body: ChatRequest) -> ToolCallGrammar | None:
    """The shape a forced answer must take (`tool_choice` "required" or a named function):
    the template's call format around calls of the callable tools."""
    choice = tool_choice(body)
    if not choice.forced or not body.tools:
        return None
    fmt = toolchoice.call_format_of_text(model.template)
    calls = toolchoice.forced_tools(choice, body.tools)
    schemas = [toolchoice.call_schema(fmt.shape, tool) for tool in calls]
    max_calls = 1 if fmt.separator is None else choice.max_calls
    return ToolCallGrammar(
        prefix=fmt.prefix,
        schema=schemas[0] if len(schemas) == 1 else {"anyOf": schemas},
        separator=fmt.separator or "",
        suffix=fmt.suffix,
        max_calls=max_calls,
        order=tuple(toolchoice.shape_order(fmt.shape)),
    )


# ----------------------------------------------------------------------------- rendering


async def chat_prompt(prepared: Prepared, body: ChatRequest, runner: Runner | None) -> Prompt:
    """The chat prompt, the oldest turns dropped until it fits num_ctx (Ollama's rule);
    without a runner (a debug render) or with `truncate: false`, nothing is dropped (the
    runner then refuses a prompt that does not fit, Ollama's 400)."""
    tokenize = None if runner is None or body.truncate is False else tokenizer_of(runner)
    return await asyncio.to_thread(
        rules.build_chat_prompt,
        template_of(prepared.model),
        prepared.conversation,
        num_ctx=prepared.load.options.num_ctx,
        tokenize=tokenize,
        tools=offered_tools(body),
        think=effective_think(prepared.model, template_of(prepared.model), body.think),
        image_tokens=IMAGE_TOKENS if prepared.model.projectors else 0,
    )


async def generate_prompt(
    prepared: Prepared, body: GenerateRequest, runner: Runner | None
) -> Prompt:
    """The generate prompt: raw as given, else templated; `context` detokenized in front."""
    prefix = ""
    if body.context and runner is not None:
        prefix = await runner.detokenize(body.context)
    if body.raw:  # images are placed where the raw prompt says `[img-N]`
        return Prompt(prefix + body.prompt, [decode_image(i) for i in body.images or []])
    model = prepared.model
    prompt = rules.build_generate_prompt(
        template_of(model, body.template),
        body.prompt,
        system=body.system,
        model_system=model.system,
        model_messages=[from_wire(m) for m in model.messages],
        images=[decode_image(i) for i in body.images or []],
        suffix=body.suffix or "",
        think=effective_think(model, template_of(model, body.template), body.think),
        has_context=bool(body.context),
    )
    return Prompt(prefix + prompt.text, prompt.images)
