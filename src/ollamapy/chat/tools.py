"""Tool calls in generated text: spot them while tokens stream, hand the rest back as content.

A model calls a tool by writing text its template would render for an assistant message with
`.ToolCalls`. Like Ollama, we learn the shape from the template itself: the literal text that
opens the `.ToolCalls` section (`<tool_call>`, `[TOOL_CALLS] [`, `Action: ```json ...`) is the
*tag* that announces a call; a template with no such text (the calls are bare JSON) gets the
tag `{`, meaning "output that starts with a JSON value may be a call".

`ToolCallParser` sits between the runner's chunks and the client. Text streams through
untouched until it could be the start of a call; from there it is held back until a JSON
value completes. A value naming one of the request's tools becomes a call; anything else is
released as ordinary content, so a model that merely talks about JSON loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum, auto
from typing import Any

from ollamapy.chat.messages import ToolCall
from ollamapy.template import Template
from ollamapy.template import nodes as n

BARE_TAG = "{"
"""The tag of a template whose calls are bare JSON: a call is output that starts with `{`/`[`."""
BARE_TAGS = frozenset({"", "{", "["})
"""Tags that are just JSON's own opening: read as bare JSON (a lone `[` is as weak as `{`)."""

OPENERS = "{["
SEPARATORS = " \t\r\n,;"
"""Between calls: whitespace, commas (JSON arrays, Mistral) and semicolons (Llama 3.2)."""
PYTHON_TAG = "<|python_tag|>"
"""Llama 3.1/3.2 may open a bare-JSON call with this special token; it is markup, not content."""
NAME_KEYS = ("name", "tool_name", "function")
ARGUMENT_KEYS = ("arguments", "parameters")
GO_FLOAT_INT_LIMIT = 1e21
"""Go prints integral float64s below this without a fraction; we keep them ints to match."""


# ----------------------------------------------------------------------------- the tag


def tool_call_tag(template: Template) -> str:
    """The text that opens a tool-call section in `template`'s output, or `{` if none.

    It is the first non-blank literal text inside the first `if`/`range`/`with` on
    `.ToolCalls`, read before any action (an action means the literal is per-call data),
    cut at the first `{` (where the JSON of a call begins) and trimmed.
    """
    section = _tool_calls_section(template.root.nodes)
    if section is None:
        return BARE_TAG
    text = _first_text(section.body.nodes)
    if text is None:
        return BARE_TAG
    tag = text.replace("\r\n", "\n").split("{", 1)[0].strip()
    return tag or BARE_TAG


def _mentions_tool_calls(pipe: n.PipeNode) -> bool:
    for command in pipe.cmds:
        for arg in command.args:
            if isinstance(arg, n.FieldNode) and "ToolCalls" in arg.idents:
                return True
            if isinstance(arg, n.VariableNode) and "ToolCalls" in arg.idents[1:]:
                return True
    return False


def _tool_calls_section(nodes: Sequence[n.Node]) -> n.BranchNode | None:
    """The first branch (depth first) whose pipeline mentions `.ToolCalls`."""
    for node in nodes:
        if isinstance(node, n.BranchNode):
            if _mentions_tool_calls(node.pipe):
                return node
            found = _tool_calls_section(_branch_lists(node))
        elif isinstance(node, n.ListNode):
            found = _tool_calls_section(node.nodes)
        else:
            continue
        if found is not None:
            return found
    return None


def _branch_lists(node: n.BranchNode) -> list[n.Node]:
    return [node.body] if node.else_body is None else [node.body, node.else_body]


def _first_text(nodes: Sequence[n.Node]) -> str | None:
    """The first non-blank text, looking into the first nested branch but never past an action."""
    for node in nodes:
        if isinstance(node, n.TextNode):
            if node.text.strip():
                return node.text
        elif isinstance(node, n.ActionNode):
            return None
        elif isinstance(node, n.BranchNode):
            return _first_text(_branch_lists(node))
        elif isinstance(node, n.ListNode):
            found = _first_text(node.nodes)
            if found is not None:
                return found
    return None


# ----------------------------------------------------------------------------- JSON


def json_value_end(text: str) -> int | None:
    """Where the JSON object/array opening `text` ends, or None while it is still open.

    Brackets inside strings do not count. Mismatched brackets are left for `json.loads`.
    """
    depth = 0
    in_string = escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif in_string:
            escaped = char == "\\"
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char in OPENERS:
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _go_float(text: str) -> int | float:
    """Parse a JSON number with a fraction/exponent; keep integral values ints as Go prints them."""
    value = float(text)
    if value.is_integer() and abs(value) < GO_FLOAT_INT_LIMIT:
        return int(value)
    return value


def _loads(text: str) -> object:
    try:
        return json.loads(text, parse_float=_go_float)
    except (ValueError, RecursionError):  # malformed, or nested deeper than Python recurses
        return None


def calls_in(value: object, tools: frozenset[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """The calls a JSON value spells (an object, or a non-empty array of them), else None."""
    items = value if isinstance(value, list) else [value]
    calls = [_call_of(item, tools) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _call_of(item: object, tools: frozenset[str]) -> tuple[str, dict[str, Any]] | None:
    """`{"name": .., "arguments": ..}` and the spellings models use for it, else None.

    Also accepted: `parameters` for `arguments`, `tool_name` for `name`, the OpenAI shape
    `{"function": {...}}`, and `{"<tool>": {args}}`. Arguments may be a JSON string.
    """
    if not isinstance(item, dict):
        return None
    inner = item.get("function")
    if isinstance(inner, dict):
        return _call_of(inner, tools)
    name = next((item[k] for k in NAME_KEYS if isinstance(item.get(k), str)), None)
    if name is None:
        return _keyed_call(item, tools)
    arguments = _arguments(item)
    if name not in tools or arguments is None:
        return None
    return name, arguments


def _keyed_call(item: dict[str, Any], tools: frozenset[str]) -> tuple[str, dict[str, Any]] | None:
    if len(item) != 1:
        return None
    ((name, arguments),) = item.items()
    if name in tools and isinstance(arguments, dict):
        return name, arguments
    return None


def _arguments(item: dict[str, Any]) -> dict[str, Any] | None:
    """The call's arguments: an object, a JSON string of one, or {} when there are none."""
    raw = next((item[k] for k in ARGUMENT_KEYS if k in item), None)
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        raw = _loads(raw)
    return raw if isinstance(raw, dict) else None


# ----------------------------------------------------------------------------- the parser


class _State(Enum):
    SCANNING = auto()
    """Looking for the tag; text before it is content."""
    CALLING = auto()
    """Inside a tool-call section: holding text until each JSON value completes."""
    PASSING = auto()
    """Bare-JSON output that turned out to be prose: everything is content from here on."""


def tool_names(tools: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The function names a request offers (`[{"type": "function", "function": {...}}]`)."""
    names: set[str] = set()
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return frozenset(names)


class ToolCallParser:
    """Splits a streamed response into content and tool calls (one parser per response).

    `feed` each chunk, then `finish` once; both return `(content, calls)`: text safe to show
    now and calls completed now. Held text that never becomes a call is released, in order.

    Rules. With a tag, text before the tag is content; after it, JSON values are read, skipping
    whitespace, commas, semicolons, repeated tags and the brackets of an array of calls, so
    each call of `[{...}, {...}]` is emitted as soon as it completes. A tag that ends in `[`
    (Mistral's `[TOOL_CALLS] [`) is matched without it: the bracket is the array's, and models
    also write `[TOOL_CALLS][...]` or a single object. Once a section has produced a call, the
    rest of it is the model's call markup (closing tags, brackets) and is dropped, as Ollama
    does. A section whose first value is not a call is released and scanning resumes after the
    tag. Without a tag, only output whose first non-blank character is `{`/`[` (or Llama's
    `<|python_tag|>`) is read as calls; any other text turns the parser into a pass-through.
    """

    def __init__(self, tag: str, tools: frozenset[str], max_calls: int = 0) -> None:
        self.tag = tag or BARE_TAG
        self.tools = tools
        self.max_calls = max_calls
        """The most calls emitted (`parallel_tool_calls: false` is 1); later ones are dropped."""
        self._bare = tag in BARE_TAGS
        self._match = _matched_tag(self.tag)
        self._state = _State.SCANNING
        self._held = ""
        self._section_calls = 0
        self._arrays = 0
        self._count = 0

    @classmethod
    def for_template(
        cls, template: Template, tools: Iterable[Mapping[str, Any]], max_calls: int = 0
    ) -> ToolCallParser:
        return cls(tool_call_tag(template), tool_names(tools), max_calls)

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        if self._state is _State.PASSING:
            return text, []
        self._held += text
        content: list[str] = []
        calls: list[ToolCall] = []
        while self._step(content, calls):
            pass
        return "".join(content), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        """End of output: release what is held, unless it is the tail of a call section."""
        if self._state is _State.SCANNING and self._bare and self._held.strip() == "":
            return self._release(), []
        held_markup = self._state is _State.CALLING and self._section_calls > 0
        start, _ = self._skip_separators()
        held = self._release()
        if held_markup and (not self._bare or start == len(held)):
            return "", []  # the section's closing markup (or separators) after its calls
        return held, []

    # -- one step of the state machine: True while it made progress and may make more

    def _step(self, content: list[str], calls: list[ToolCall]) -> bool:
        if self._state is _State.PASSING:
            content.append(self._release())
            return False
        if self._state is _State.SCANNING:
            return self._scan_bare(content) if self._bare else self._scan_tag(content)
        return self._read_value(content, calls)

    def _scan_tag(self, content: list[str]) -> bool:
        at = self._held.find(self._match)
        if at < 0:
            keep = _partial_suffix(self._held, self._match)
            content.append(self._held[: len(self._held) - keep])
            self._held = self._held[len(self._held) - keep :]
            return False
        content.append(self._held[:at])
        self._held = self._held[at:]
        self._enter_section()
        return True

    def _scan_bare(self, content: list[str]) -> bool:
        stripped = self._held.lstrip()
        if not stripped or PYTHON_TAG.startswith(stripped):
            return False  # blank (or a python tag arriving) so far: hold it, a call may follow
        if stripped[0] in OPENERS or stripped.startswith(PYTHON_TAG):
            self._enter_section()
        else:
            self._state = _State.PASSING
        return True

    def _enter_section(self) -> None:
        self._state = _State.CALLING
        self._section_calls = 0
        self._arrays = 0

    def _read_value(self, content: list[str], calls: list[ToolCall]) -> bool:
        start, arrays = self._skip_separators()
        rest = self._held[start:]
        if not rest or _is_proper_prefix(rest, self._markers()):
            return False  # nothing yet, or a tag still arriving
        end = json_value_end(rest) if rest[0] in OPENERS else -1
        if end is None:
            return False  # a value still arriving
        found = calls_in(_loads(rest[:end]), self.tools) if end > 0 else None
        if found is None:
            return self._not_a_call(start, content)
        calls.extend(self._numbered(found))
        self._section_calls += len(found)
        self._arrays = arrays
        self._held = self._held[start + end :]
        return True

    def _markers(self) -> tuple[str, ...]:
        """Markup that may separate calls: the tag, or in bare output Llama's python tag."""
        return (PYTHON_TAG,) if self._bare else (self._match,)

    def _skip_separators(self) -> tuple[int, int]:
        """Where the next value may start, past separators, markers and array brackets: a `[`
        before a call opens an array of calls, whose `]` is then a separator too. Returns the
        offset and the array depth there (committed only when a call is read)."""
        held, at, arrays = self._held, 0, self._arrays
        while at < len(held):
            char = held[at]
            if char in SEPARATORS:
                at += 1
            elif char == "[" and held[at + 1 :].lstrip()[:1] in ("{", ""):
                at, arrays = at + 1, arrays + 1
            elif char == "]" and arrays > 0:
                at, arrays = at + 1, arrays - 1
            elif marker := next((m for m in self._markers() if held.startswith(m, at)), None):
                at += len(marker)
            else:
                break
        return at, arrays

    def _not_a_call(self, start: int, content: list[str]) -> bool:
        if self._bare:
            self._state = _State.PASSING
            return True
        if self._section_calls:
            return self._drop_markup(start)
        content.append(self._held[:start])  # the tag was not a call after all
        self._held = self._held[start:]
        self._state = _State.SCANNING
        return True

    def _drop_markup(self, start: int) -> bool:
        """After a call, skip the section's markup up to the next tag (kept for the next call)."""
        at = self._held.find(self._match, start)
        if at < 0:
            keep = _partial_suffix(self._held, self._match)
            self._held = self._held[len(self._held) - keep :]
            return False
        self._held = self._held[at:]
        self._arrays = 0
        return True

    def _release(self) -> str:
        held, self._held = self._held, ""
        return held

    def _numbered(self, found: list[tuple[str, dict[str, Any]]]) -> list[ToolCall]:
        numbered = []
        for name, arguments in found:
            if self.max_calls and self._count >= self.max_calls:
                break
            numbered.append(ToolCall(name, arguments, index=self._count))
            self._count += 1
        return numbered


def _matched_tag(tag: str) -> str:
    """The text the parser looks for: the tag less a trailing array bracket (see the class)."""
    if tag.endswith("[") and tag[:-1].strip():
        return tag[:-1].rstrip()
    return tag


def _is_proper_prefix(text: str, markers: tuple[str, ...]) -> bool:
    return any(len(text) < len(m) and m.startswith(text) for m in markers)


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a proper beginning of `tag`."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
