"""A thinking model's reasoning trace, taken out of its output while tokens stream.

Models such as Qwen 3 and DeepSeek R1 write their reasoning between two tags
(`<think>` ... `</think>`) before the answer. As Ollama does, the tags are learned from the
model's template: the text around `{{ .Thinking }}` where the template renders an earlier
assistant message. A template that has such tags makes the model thinking-capable.

`ThinkingParser` splits streamed text into (thinking, content). It holds back only what may
still be the start of a tag, so the trace streams as it comes; whitespace right after either
tag is dropped, as Ollama drops it. A template that opens the trace for the model (the
rendered prompt ends with the opening tag) starts the parser inside the trace; a trace that
never closes is all thinking; output that does not start with the opening tag is all content.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum, auto

from ollamapy.chat.messages import Message
from ollamapy.template import Template
from ollamapy.template import nodes as n

GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
GO_SPACE += "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
"""What Go's unicode.IsSpace calls white space (Ollama trims with it; Python's
`str.strip()` also strips the ASCII separators U+001C..U+001F, which Go keeps)."""


@dataclass(frozen=True, slots=True)
class ThinkingTags:
    """The text that opens and closes a reasoning trace, e.g. `<think>` and `</think>`."""

    opening: str
    closing: str


# ----------------------------------------------------------------------------- the tags


def thinking_tags(template: Template) -> ThinkingTags | None:
    """The tags around `.Thinking` in `template`'s messages, or None (not a thinking model).

    Ollama's heuristic: for each `.Thinking` field inside a `range` over `.Messages`, the
    nearest enclosing list's first text (trimmed) is the opening tag and its last text the
    closing tag; a later match overrides an earlier one, each tag only where the list
    starts (ends) with text. Both tags must be found.
    """
    found = _TagSearch()
    found.visit(template.root, [])
    if found.opening and found.closing:
        return ThinkingTags(found.opening, found.closing)
    return None


@functools.lru_cache(maxsize=64)
def tags_for_text(text: str) -> ThinkingTags | None:
    """`thinking_tags` of a template text, found once per text (every request asks)."""
    return thinking_tags(Template.parse(text, "thinking"))


class _TagSearch:
    """A walk over the parse tree that remembers the path to each node it visits."""

    def __init__(self) -> None:
        self.opening = ""
        self.closing = ""

    def visit(self, node: n.Node, ancestors: list[n.Node]) -> None:
        path = [*ancestors, node]
        if isinstance(node, n.FieldNode) and node.idents and node.idents[0] == "Thinking":
            self._found(path)
        for child in _visited_children(node):
            self.visit(child, path)

    def _found(self, path: Sequence[n.Node]) -> None:
        ranges = [a for a in path if isinstance(a, n.RangeNode)]
        if not ranges or not _pipe_uses_field(ranges[-1].pipe, "Messages"):
            return
        lists = [a for a in path if isinstance(a, n.ListNode)]
        if not lists or not lists[-1].nodes:
            return
        nodes = lists[-1].nodes
        if isinstance(nodes[0], n.TextNode):
            self.opening = nodes[0].text.strip(GO_SPACE)
        if isinstance(nodes[-1], n.TextNode):
            self.closing = nodes[-1].text.strip(GO_SPACE)


def _visited_children(node: n.Node) -> list[n.Node]:
    """The children Ollama's walk visits: not into `(pipe).Field` chains or declarations."""
    if isinstance(node, n.ChainNode):
        return []
    if isinstance(node, n.PipeNode):
        return list(node.cmds)
    return node.children()


def _pipe_uses_field(pipe: n.PipeNode, name: str) -> bool:
    stack: list[n.Node] = [pipe]
    while stack:
        node = stack.pop()
        if isinstance(node, n.FieldNode) and node.idents[0] == name:
            return True
        stack.extend(_visited_children(node))
    return False


# ----------------------------------------------------------------------------- the parser


class _State(Enum):
    LOOKING = auto()
    """Before the opening tag: only white space (or part of the tag) seen so far."""
    OPENED = auto()
    """Just after the opening tag: white space here is dropped."""
    THINKING = auto()
    """Inside the trace."""
    CLOSED = auto()
    """Just after the closing tag: white space here is dropped."""
    ANSWER = auto()
    """The rest is content."""


def prompt_opens_trace(tags: ThinkingTags, prompt: str) -> bool:
    """Whether the template opened the trace: the prompt ends with the opening tag."""
    return prompt.strip(GO_SPACE).endswith(tags.opening)


class ThinkingParser:
    """Splits a model's streamed output into its reasoning trace and its answer."""

    def __init__(self, tags: ThinkingTags) -> None:
        self.tags = tags
        self._state = _State.LOOKING
        self._held = ""

    @classmethod
    def for_prompt(cls, tags: ThinkingTags, prompt: str) -> ThinkingParser:
        """A parser for output that follows `prompt`: when the prompt already ends with the
        opening tag (the template opened the trace), the output starts inside the trace."""
        parser = cls(tags)
        if prompt_opens_trace(tags, prompt):
            parser.feed(tags.opening)
        return parser

    @property
    def thinking(self) -> bool:
        """Whether the output is inside the trace (or may still open one)."""
        return self._state in (_State.LOOKING, _State.OPENED, _State.THINKING)

    def feed(self, text: str) -> tuple[str, str]:
        """Add streamed text; return the (thinking, content) that is now certain."""
        self._held += text
        thinking: list[str] = []
        content: list[str] = []
        while self._step(thinking, content):
            pass
        return "".join(thinking), "".join(content)

    def finish(self) -> tuple[str, str]:
        """The end of the output: what was held back for a tag that never came.

        A trace that never closed keeps its last characters as thinking; output that was
        only part of an opening tag is content. White space alone is dropped (Ollama never
        sends it either).
        """
        held, self._held = self._held, ""
        if not held.strip(GO_SPACE):
            return "", ""
        if self._state is _State.THINKING:
            return held, ""
        return "", held

    def _step(self, thinking: list[str], content: list[str]) -> bool:
        """Consume what the current state can decide; True when another step may consume more."""
        held, tags = self._held, self.tags
        if self._state is _State.LOOKING:
            trimmed = held.lstrip(GO_SPACE)
            if trimmed.startswith(tags.opening):
                self._held = trimmed[len(tags.opening) :]
                self._state = _State.OPENED
                return True
            if tags.opening.startswith(trimmed):  # white space, or part of the tag
                return False
            self._state = _State.ANSWER  # no trace: the text is the answer, untouched
            return True
        if self._state in (_State.OPENED, _State.CLOSED):
            trimmed = held.lstrip(GO_SPACE)
            self._held = trimmed
            if trimmed:
                self._state = _State.THINKING if self._state is _State.OPENED else _State.ANSWER
            return bool(trimmed)
        if self._state is _State.THINKING:
            end = held.find(tags.closing)
            if end >= 0:
                thinking.append(held[:end])
                self._held = held[end + len(tags.closing) :]
                self._state = _State.CLOSED
                return True
            keep = _partial_suffix(held, tags.closing)
            thinking.append(held[: len(held) - keep])
            self._held = held[len(held) - keep :]
            return False
        content.append(held)
        self._held = ""
        return False


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag` (it may be a split tag)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


# ----------------------------------------------------------------------------- history

THINK_TAGS = ThinkingTags("<think>", "</think>")
"""Qwen 3's and DeepSeek R1's tags."""


def without_old_traces(messages: Sequence[Message], tags: ThinkingTags) -> list[Message]:
    """Assistant turns before the last user message with any trace cut from their content.

    Clients often send an answer back as they got it, trace included; Ollama drops those
    traces for Qwen 3 and DeepSeek R1 (they cost context and the models were trained
    without them). Turns after the last user message (a tool round) keep theirs.
    """
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    out: list[Message] = []
    for i, message in enumerate(messages):
        if message.role == "assistant" and i < last_user:
            parser = ThinkingParser(tags)
            content = parser.feed(message.content)[1] + parser.finish()[1]
            message = replace(message, content=content)
        out.append(message)
    return out
