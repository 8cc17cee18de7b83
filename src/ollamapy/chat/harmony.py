"""gpt-oss's harmony format: its output channels as thinking, answer and tool calls.

gpt-oss writes messages as `<|start|>{header}<|message|>{body}<|end|>`, where the header names
the role, the channel (`analysis` for reasoning, `final` for the answer, `commentary` for
tool calls and preambles) and, for a call, the recipient (`to=functions.get_weather`). The
prompt ends with `<|start|>assistant`, so the output starts inside a header. As Ollama does,
`analysis` streams as thinking, `final` (and commentary without a recipient) as content, and
a message addressed to a function is collected and becomes one tool call at the end.

A model is read as harmony when its family is gpt-oss and its template uses harmony's
`<|start|>` and `<|end|>` markers (Ollama's shouldUseHarmony).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum, auto

from ollamapy.chat.messages import Message, ToolCall
from ollamapy.chat.thinking import GO_SPACE

START, END, MESSAGE = "<|start|>", "<|end|>", "<|message|>"
CHANNEL, CONSTRAIN = "<|channel|>", "<|constrain|>"
STOPS = ("<|return|>", "<|call|>")
"""Tokens that end the whole answer; a runner that renders them ends a message with them."""
FAMILIES = frozenset({"gptoss", "gpt-oss"})


def uses_harmony(family: str, template: str) -> bool:
    """Ollama's shouldUseHarmony: a gpt-oss model whose template writes harmony messages."""
    return family in FAMILIES and START in template and END in template


def harmony_level(think: bool | str | None) -> bool | str | None:
    """Harmony's `Reasoning:` knows low/medium/high: Ollama sends `max` as `high`."""
    return "high" if think == "max" else think


@dataclass(frozen=True, slots=True)
class Header:
    role: str = ""
    channel: str = ""
    recipient: str = ""


def parse_header(raw: str) -> Header:
    """A header such as `assistant<|channel|>commentary to=functions.f <|constrain|>json`.

    The channel is the word after `<|channel|>`; the first remaining word is the role, or
    the recipient when it starts with `to=` (the role is then `tool`); otherwise a `to=`
    word right after the role is the recipient.
    """
    raw = raw.replace(CONSTRAIN, " " + CONSTRAIN, 1).strip(GO_SPACE)
    channel = ""
    if CHANNEL in raw:
        before, after = raw.split(CHANNEL, 1)
        words = after.split(maxsplit=1)
        channel = words[0] if words and not after[:1].isspace() else ""
        rest = after[len(channel) :]
        raw = (before + rest).strip(GO_SPACE)
    words = raw.split()
    if not words:
        return Header(channel=channel)
    role, rest_words = words[0], words[1:]
    if role.startswith("to="):
        return Header("tool", channel, role[3:])
    recipient = rest_words[0][3:] if rest_words and rest_words[0].startswith("to=") else ""
    return Header(role, channel, recipient)


class _State(Enum):
    BETWEEN = auto()
    HEADER = auto()
    BODY = auto()


class _Target(Enum):
    CONTENT = auto()
    THINKING = auto()
    CALL = auto()


class HarmonyParser:
    """Splits gpt-oss's streamed output into (thinking, content); a call comes at the end."""

    def __init__(self, last: Message | None = None) -> None:
        self._held = START + "assistant" + _prefill(last)
        self._state = _State.BETWEEN
        self._target = _Target.CONTENT
        self._recipient = ""
        self._call = ""
        self._called = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Add streamed text; return the (thinking, content) that is now certain."""
        self._held += text
        out: dict[_Target, list[str]] = {_Target.THINKING: [], _Target.CONTENT: []}
        while self._step(out):
            pass
        return "".join(out[_Target.THINKING]), "".join(out[_Target.CONTENT])

    def finish(self) -> tuple[str, str, list[ToolCall]]:
        """The end of the output: what was held back, and the tool call, if one was made.

        Arguments that are not JSON leave the call's text as content (never an error).
        """
        thinking, content = "", ""
        if self._state is _State.BODY and self._held:
            thinking, content = self._emit(self._held)
        self._held = ""
        if not self._called:
            return thinking, content, []
        name = self._called.removeprefix("functions.")
        try:
            arguments = json.loads(self._call) if self._call.strip() else {}
        except json.JSONDecodeError:
            return thinking, content + self._call, []
        if not isinstance(arguments, dict):
            return thinking, content + self._call, []
        return thinking, content, [ToolCall(name, arguments)]

    def _step(self, out: dict[_Target, list[str]]) -> bool:
        held = self._held
        if self._state is _State.BETWEEN:
            if START not in held:
                self._held = held[-(len(START) - 1) :] if held else ""  # a split START
                return False
            self._held = held.split(START, 1)[1]
            self._state = _State.HEADER
            return True
        if self._state is _State.HEADER:
            if MESSAGE not in held:
                return False
            raw, self._held = held.split(MESSAGE, 1)
            self._open(parse_header(raw))
            self._state = _State.BODY
            return True
        end, size = _first_end(held)
        if end >= 0:
            self._route(held[:end], out)
            self._held = held[end + size :]
            self._state = _State.BETWEEN
            self._target = _Target.CONTENT
            return True
        keep = max(_partial_suffix(held, tag) for tag in (END, *STOPS))
        self._route(held[: len(held) - keep], out)
        self._held = held[len(held) - keep :]
        return False

    def _open(self, header: Header) -> None:
        if header.channel in ("analysis", "commentary") and header.recipient:
            self._target = _Target.CALL
            self._recipient = header.recipient
        elif header.channel == "analysis":
            self._target = _Target.THINKING
        else:
            self._target = _Target.CONTENT

    def _route(self, text: str, out: dict[_Target, list[str]]) -> None:
        if not text:
            return
        if self._target is _Target.CALL:
            if self._recipient != self._called:
                self._called, self._call = self._recipient, ""
            self._call += text
            return
        out[self._target].append(text)

    def _emit(self, text: str) -> tuple[str, str]:
        if self._target is _Target.CALL:
            self._route(text, {})
            return "", ""
        return (text, "") if self._target is _Target.THINKING else ("", text)


def _prefill(last: Message | None) -> str:
    """Ollama's prefill: a conversation ending in a partial assistant turn continues it."""
    if last is None or last.role != "assistant":
        return ""
    if last.content:
        return CHANNEL + "final" + MESSAGE
    if last.thinking:
        return CHANNEL + "analysis" + MESSAGE
    return ""


def _first_end(text: str) -> tuple[int, int]:
    """Where the first message end (`<|end|>`, or a stop token) is, and its length."""
    found = [(text.find(tag), len(tag)) for tag in (END, *STOPS) if tag in text]
    return min(found) if found else (-1, 0)


def _partial_suffix(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
