"""A conversation -> the prompt the runner evaluates, fitted into `num_ctx` by Ollama's rule.

Ollama keeps every system message and as many of the newest messages as fit, dropping the
oldest turns first (its chatPrompt). It finds the cut by rendering each longer suffix of the
conversation in turn: quadratic in the length of the conversation. Here the whole
conversation is rendered once, and when its byte length alone proves that it fits (every
token covers at least one byte, plus a BOS and an EOS) nothing is tokenized at all. Only a
conversation that may not fit is tokenized, and only one that does not fit is cut: the cut is
found by a binary search over where the kept suffix starts (a longer suffix never needs fewer
tokens), so a long conversation costs a handful of renders, not one per message. Tokens
counted on the way are handed to the runner with the text, which then never tokenizes again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ollamapy.chat.messages import Message, Prompt, Think
from ollamapy.chat.render import render
from ollamapy.template import Template

Tokenize = Callable[[str], list[int]]
"""The model's tokenizer, with BOS/EOS added as for a completion."""

FALLBACK_TEMPLATE = "{{ .Prompt }}"
"""What a model without a TEMPLATE layer renders (Ollama's default)."""


@functools.lru_cache(maxsize=64)
def parse_template(text: str) -> Template:
    """A model's template, parsed once per template text (a model's digest names it, and
    its text is read with it): every request of a model renders with the same one."""
    return Template.parse(text or FALLBACK_TEMPLATE, "template")


@dataclass
class _Suffixes:
    """The conversation from message `i` on (with every system message before `i`),
    rendered and measured at most once per `i`."""

    template: Template
    messages: Sequence[Message]
    num_ctx: int
    tokenize: Tokenize
    image_tokens: int
    tools: Sequence[Mapping[str, Any]] | None
    think: Think
    measured: dict[int, tuple[str, list[int] | None]] = field(default_factory=dict)

    def kept(self, i: int) -> list[Message]:
        system = [m for m in self.messages[:i] if m.role == "system"]
        return [*system, *self.messages[i:]]

    def fits(self, i: int) -> bool:
        text = render(self.template, self.kept(i), tools=self.tools, think=self.think)
        images = self.image_tokens * sum(len(m.images) for m in self.messages[i:])
        if len(text.encode()) + 2 + images <= self.num_ctx:
            self.measured[i] = (text, None)
            return True
        tokens = self.tokenize(text)
        self.measured[i] = (text, tokens)
        return len(tokens) + images <= self.num_ctx

    def first_kept(self) -> int:
        """Where the kept suffix starts: the smallest `i` that fits, the newest message
        always kept (Ollama walks back from the newest and stops at the first misfit)."""
        last = len(self.messages) - 1
        if last <= 0 or self.fits(0):
            return 0
        low, high = 1, last
        while low < high:
            middle = (low + high) // 2
            if self.fits(middle):
                high = middle
            else:
                low = middle + 1
        return low


def build_chat_prompt(
    template: Template,
    messages: Sequence[Message],
    *,
    num_ctx: int,
    tokenize: Tokenize | None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: Think = None,
    image_tokens: int = 0,
) -> Prompt:
    """The prompt for /api/chat, keeping as much recent history as fits in `num_ctx`.

    `tokenize` None renders everything (no truncation). `image_tokens` is what one image
    costs in the context (Ollama counts 768 for models with a vision projector, else 0).
    """
    if tokenize is None:
        kept, images = _tag_images(messages)
        return Prompt(render(template, kept, tools=tools, think=think), images)
    suffixes = _Suffixes(template, messages, num_ctx, tokenize, image_tokens, tools, think)
    first = suffixes.first_kept()
    kept, images = _tag_images(suffixes.kept(first))
    if images:
        return Prompt(render(template, kept, tools=tools, think=think), images)
    if first not in suffixes.measured:  # the newest message alone, never measured
        suffixes.fits(first)
    text, tokens = suffixes.measured[first]
    return Prompt(text, [], tokens)


def _tag_images(messages: Sequence[Message]) -> tuple[list[Message], list[bytes]]:
    """Give each image an id and refer to it as `[img-N]` in its message's content.

    An `[img]` placeholder in the content is replaced in order; otherwise tags are prefixed.
    """
    images: list[bytes] = []
    out: list[Message] = []
    for msg in messages:
        prefix, content = "", msg.content
        for data in msg.images:
            tag = f"[img-{len(images)}]"
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
            images.append(data)
        out.append(replace(msg, content=prefix + content) if msg.images else msg)
    return out, images


def with_model_system(messages: Sequence[Message], model_system: str) -> list[Message]:
    """/api/chat: the Modelfile's SYSTEM goes first unless the request starts with a system."""
    msgs = list(messages)
    if msgs and msgs[0].role != "system" and model_system:
        return [Message("system", model_system), *msgs]
    return msgs


def generate_messages(
    prompt: str,
    *,
    system: str | None = None,
    model_system: str = "",
    model_messages: Sequence[Message] = (),
    images: Sequence[bytes] = (),
    has_context: bool = False,
) -> list[Message]:
    """/api/generate as a conversation: system (request's, else model's), the Modelfile's
    MESSAGEs (unless the request continues a `context`), then the prompt as a user turn."""
    msgs: list[Message] = []
    chosen = system or model_system
    if chosen:
        msgs.append(Message("system", chosen))
    if not has_context:
        msgs.extend(model_messages)
    msgs.append(Message("user", prompt, images=tuple(images)))
    return msgs


def build_generate_prompt(
    template: Template,
    prompt: str,
    *,
    system: str | None = None,
    model_system: str = "",
    model_messages: Sequence[Message] = (),
    images: Sequence[bytes] = (),
    suffix: str = "",
    think: Think = None,
    has_context: bool = False,
) -> Prompt:
    """The prompt for /api/generate (not raw; never truncated, as Ollama's). With a suffix,
    the template's fill-in-middle form renders `.Prompt`/`.Suffix` directly; otherwise it is
    the chat flow without tools."""
    msgs = generate_messages(
        prompt,
        system=system,
        model_system=model_system,
        model_messages=model_messages,
        images=images,
        has_context=has_context,
    )
    if suffix:
        kept, tagged = _tag_images(msgs)
        text = render(template, kept, think=think, prompt=kept[-1].content, suffix=suffix)
        return Prompt(text, tagged)
    return build_chat_prompt(template, msgs, num_ctx=0, tokenize=None, think=think)
