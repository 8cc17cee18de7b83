"""Messages (+ tools) and a model's template -> the prompt text, by Ollama's rules.

Two template styles exist. A template that mentions `.Messages` is rendered once over the whole
conversation. A legacy template (`.System`, `.Prompt`, `.Response`) is rendered once per user
turn and the pieces concatenated; the last turn is cut right after `{{ .Response }}` so the
model continues from there. Fitting the result into `num_ctx` is `chat.prompt`'s concern.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ollamapy.chat.messages import Message, Think
from ollamapy.chat.views import message_view, tool_view
from ollamapy.template import Template
from ollamapy.template import nodes as n


def collate(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """All system contents joined, and the messages with same-role runs merged.

    Consecutive messages with the same role (except `tool`) become one, contents joined by a
    blank line; Ollama does this so templates see strictly alternating turns.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    out: list[Message] = []
    for msg in messages:
        if out and out[-1].role == msg.role and msg.role != "tool":
            out[-1] = replace(out[-1], content=out[-1].content + "\n\n" + msg.content)
        else:
            out.append(msg)
    return system, out


def _think_values(think: Think) -> dict[str, object]:
    """`.Think`, `.ThinkLevel`, `.IsThinkSet` as Ollama's api.ThinkValue gives them: a
    level turns thinking on, and `true` alone reads as the level "medium"."""
    if isinstance(think, str):
        return {"Think": bool(think), "ThinkLevel": think, "IsThinkSet": True}
    level = "medium" if think else ""
    return {"Think": bool(think), "ThinkLevel": level, "IsThinkSet": think is not None}


def render(
    template: Template,
    messages: Sequence[Message],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: Think = None,
    prompt: str = "",
    suffix: str = "",
) -> str:
    """Render one prompt exactly as Ollama's Template.Execute does (no truncation)."""
    thinking = _think_values(think)
    if prompt and suffix:
        data = {"Prompt": prompt, "Suffix": suffix, "Response": ""} | thinking
        return template.execute(data)
    system, collated = collate(messages)
    if template.uses("Messages"):
        data = {
            "System": system,
            "Messages": [message_view(m) for m in collated],
            "Tools": [tool_view(t) for t in tools] if tools else None,
            "Response": "",
        } | thinking
        return template.execute(data)
    return _render_legacy(template, collated, thinking)


def _render_legacy(
    template: Template, messages: Sequence[Message], thinking: dict[str, object]
) -> str:
    """One rendering per user turn; the last is cut after `{{ .Response }}`."""
    parts: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def flush() -> None:
        parts.append(template.execute(turn | thinking))
        turn.update(System="", Prompt="", Response="")

    for msg in messages:
        slot = _LEGACY_SLOTS.get(msg.role)
        if slot is None:
            continue
        if slot == "System" and (turn["Prompt"] or turn["Response"]):
            flush()
        if slot == "Prompt" and turn["Response"]:
            flush()
        turn[slot] = msg.content
    parts.append(_cut_after_response(template.name, template.text).execute(turn | thinking))
    return "".join(parts)


_LEGACY_SLOTS = {"system": "System", "user": "Prompt", "assistant": "Response"}


@functools.lru_cache(maxsize=64)
def _cut_after_response(name: str, text: str) -> Template:
    """The template with everything after the first `.Response` removed (made once per
    template text: a legacy template is rendered once per turn of every request)."""
    template = Template.parse(text, name)
    cutter = _Cutter()
    trees = {name: cutter.list(tree) for name, tree in template.trees.items()}
    return Template(template.name, template.text, trees)


class _Cutter:
    """Ollama's deleteNode: keep nodes until a field named Response is met, drop the rest."""

    def __init__(self) -> None:
        self.cut = False

    def list(self, node: n.ListNode) -> n.ListNode:
        kept = [c for c in (self.node(c) for c in node.nodes) if c is not None]
        return n.ListNode(node.pos, kept)

    def node(self, node: n.Node) -> n.Node | None:
        if self.cut:
            return None
        if isinstance(node, n.BranchNode):
            body = self.list(node.body)
            else_body = self.list(node.else_body) if node.else_body is not None else None
            return type(node)(node.pos, node.line, node.pipe, body, else_body)
        if isinstance(node, n.ActionNode):
            self.cut = any(
                isinstance(a, n.FieldNode) and "Response" in a.idents
                for cmd in node.pipe.cmds
                for a in cmd.args
            )
        return node
