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

Most templates render a conversation as one piece per message, each opened by a special
token (ChatML's `<|im_start|>`, Gemma's `<start_of_turn>`). Then the kept conversation is the
whole render with a stretch taken out, and when the tokenizer says where special tokens end
in the whole render, every candidate's token count follows from the whole render's tokens
(text after a special token is tokenized on its own): the cut is found with no render and no
tokenizing at all, and two renders confirm it (the kept conversation and the one a message
longer are exactly the predicted texts), or the binary search decides after all.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ollamapy.chat.messages import Message, Prompt, Think
from ollamapy.chat.render import render
from ollamapy.template import Template


@dataclass(frozen=True, slots=True)
class Counted:
    """A text's tokens and, when the tokenizer knows, where its special tokens end: UTF-8
    byte offsets into the text and the number of tokens up to each."""

    tokens: list[int]
    cut_offsets: Sequence[int] = ()
    cut_counts: Sequence[int] = ()


Tokenize = Callable[[str], "list[int] | Counted"]
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

    whole: Counted | None = None

    def fits(self, i: int) -> bool:
        text = render(self.template, self.kept(i), tools=self.tools, think=self.think)
        images = self.image_tokens * sum(len(m.images) for m in self.messages[i:])
        if len(text.encode()) + 2 + images <= self.num_ctx:
            self.measured[i] = (text, None)
            return True
        counted = self.tokenize(text)
        if not isinstance(counted, Counted):
            counted = Counted(counted)
        if i == 0:
            self.whole = counted
        self.measured[i] = (text, counted.tokens)
        return len(counted.tokens) + images <= self.num_ctx

    def first_kept(self) -> int:
        """Where the kept suffix starts: the smallest `i` that fits, the newest message
        always kept (Ollama walks back from the newest and stops at the first misfit)."""
        last = len(self.messages) - 1
        if last <= 0 or self.fits(0):
            return 0
        predicted = self._predicted_cut()
        if predicted is not None:
            return predicted
        low, high = 1, last
        while low < high:
            middle = (low + high) // 2
            if self.fits(middle):
                high = middle
            else:
                low = middle + 1
        return low

    def _predicted_cut(self) -> int | None:
        """The cut found from the whole render's tokens (see the module docstring), once two
        renders confirm it; None when the template or the conversation does not allow it."""
        seams = self._seams()
        if seams is None:
            return None
        whole_text, _ = self.measured[0]
        assert self.whole is not None
        tokens, data = self.whole.tokens, whole_text.encode()
        first, places = seams
        head, head_count = places[first]

        def spliced(i: int) -> tuple[str, list[int]]:
            at, count = places[i]
            return (data[:head] + data[at:]).decode(), tokens[:head_count] + tokens[count:]

        last = len(self.messages) - 1
        total = len(tokens)
        cut = next(
            (
                i
                for i in range(first + 1, last + 1)
                if head_count + total - places[i][1] <= self.num_ctx
            ),
            last,
        )
        for i in (cut, cut - 1):
            if i <= first:
                continue
            text = render(self.template, self.kept(i), tools=self.tools, think=self.think)
            expected, counted = spliced(i)
            if text != expected:
                return None
            self.measured[i] = (text, counted)
        return cut

    def _seams(self) -> tuple[int, dict[int, tuple[int, int]]] | None:
        """Where each message's piece starts in the whole render, as (byte offset, tokens
        before it) at the last special token's end before its content, if every message
        after the leading system messages has content found in order, no images, and no
        later system message; and the index of the first message after the systems."""
        whole = self.whole
        if whole is None or not whole.cut_offsets:
            return None
        messages = self.messages
        first = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
        later = messages[first:]
        if not later or any(m.role == "system" or m.images or not m.content for m in later):
            return None
        data = self.measured[0][0].encode()
        offsets, counts = whole.cut_offsets, whole.cut_counts
        places: dict[int, tuple[int, int]] = {}
        searched = 0
        for i, message in enumerate(later, start=first):
            content = message.content.encode()
            found = data.find(content, searched)
            at = bisect.bisect_right(offsets, found) - 1
            if found < 0 or at < 0 or (offsets[at] <= searched and i > first):
                return None
            places[i] = (offsets[at], counts[at])
            searched = found + len(content)
        return first, places


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
