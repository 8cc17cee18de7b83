"""Messages (+ tools) and a model's template -> the prompt text, by Ollama's rules.

Two template styles exist. A template that mentions `.Messages` is rendered once over the whole
conversation. A legacy template (`.System`, `.Prompt`, `.Response`) is rendered once per user
turn and the pieces concatenated; the last turn is cut right after `{{ .Response }}` so the
model continues from there. `build_chat_prompt` also drops the oldest messages until the
prompt fits `num_ctx`, keeping every system message and the latest message (Ollama's chatPrompt).

Raw mode (`/api/generate` with `raw: true`) bypasses all of this: the caller sends the prompt
verbatim. The deprecated `context` token array is also the caller's concern: detokenize it and
put it in front of the prompt built here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ollamapy.template import OrderedObject, Template, marshal
from ollamapy.template import nodes as n

Think = bool | str | None
"""A request's `think`: unset, on/off, or a level such as "high"."""


@dataclass(frozen=True)
class ToolCall:
    """One function call an assistant message made."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""
    index: int = 0


@dataclass(frozen=True)
class Message:
    """One chat message, as /api/chat carries it (images are raw bytes)."""

    role: str
    content: str = ""
    images: tuple[bytes, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_name: str = ""
    thinking: str = ""
    tool_call_id: str = ""


@dataclass(frozen=True)
class Prompt:
    """The rendered prompt and the images it references as `[img-N]` (N = list index)."""

    text: str
    images: list[bytes] = field(default_factory=list)


# -- what templates see -------------------------------------------------------------------------
class GoStruct:
    """A Go struct as templates see it: fields by Go name, printed as `{a b}`."""

    def __init__(self, fields: Mapping[str, object], json_value: object = None) -> None:
        self._fields = dict(fields)
        self._json = json_value

    def __getattr__(self, name: str) -> object:
        try:
            return self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __str__(self) -> str:
        from ollamapy.template.gofmt import format_value

        return "{" + " ".join(format_value(v) for v in self._fields.values()) + "}"

    def go_json(self) -> object:
        return self._json


class JSONStruct(GoStruct):
    """A struct whose `String()` is its JSON, like Ollama's Tool, ToolFunction, Arguments."""

    def go_string(self) -> str:
        return marshal(self._json)


class OrderedMap(dict[str, Any]):
    """A map that ranges and marshals in insertion order (Ollama's ordered properties/args)."""

    def go_items(self) -> Iterator[tuple[str, Any]]:
        return iter(self.items())

    def go_json(self) -> object:
        return OrderedObject(tuple((k, _json_of(v)) for k, v in self.items()))

    def go_string(self) -> str:
        return marshal(self.go_json())


def _json_of(value: object) -> object:
    as_json = getattr(value, "go_json", None)
    return as_json() if callable(as_json) else value


def _ordered(value: object) -> object:
    """JSON objects keep the client's key order (as Ollama's ordered maps do)."""
    if isinstance(value, Mapping):
        return OrderedMap({str(k): _ordered(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return [_ordered(v) for v in value]
    return value


def _omit_empty(pairs: Sequence[tuple[str, object, bool]]) -> OrderedObject:
    """Go struct JSON: fields in order; those tagged omitempty dropped when empty."""
    kept = tuple((k, _json_of(v)) for k, v, omit in pairs if not (omit and not v))
    return OrderedObject(kept)


class PropertyType(list[str]):
    """A JSON-schema `type`: one name or several; prints as the name, or `[a b]`."""

    def go_string(self) -> str:
        return self[0] if len(self) == 1 else "[" + " ".join(self) + "]" if self else ""

    def go_json(self) -> object:
        return self[0] if len(self) == 1 else list(self)


def tool_property_view(schema: Mapping[str, Any]) -> GoStruct:
    """A tool parameter's schema as Ollama's ToolProperty struct."""
    raw_type = schema.get("type")
    kind = PropertyType([raw_type] if isinstance(raw_type, str) else list(raw_type or []))
    any_of = [tool_property_view(s) for s in schema.get("anyOf") or []]
    props = _properties(schema.get("properties"))
    fields: dict[str, object] = {
        "AnyOf": any_of,
        "Type": kind,
        "Items": _ordered(schema.get("items")),
        "Description": str(schema.get("description") or ""),
        "Enum": list(schema.get("enum") or []),
        "Properties": props,
        "Required": list(schema.get("required") or []),
    }
    omit = {"AnyOf", "Type", "Items", "Description", "Enum", "Properties", "Required"}
    json_value = _omit_empty([(_json_key(k), v, k in omit) for k, v in fields.items()])
    return GoStruct(fields, json_value)


def _json_key(go_name: str) -> str:
    return {"AnyOf": "anyOf", "Defs": "$defs"}.get(go_name, go_name.lower())


def _properties(value: object) -> OrderedMap | None:
    if not isinstance(value, Mapping):
        return None
    return OrderedMap({str(k): tool_property_view(v) for k, v in value.items()})


def tool_view(tool: Mapping[str, Any]) -> JSONStruct:
    """A request's tool (`{"type": "function", "function": {...}}`) as Ollama's api.Tool."""
    fn = tool.get("function") or {}
    params = fn.get("parameters") or {}
    params_fields: dict[str, object] = {
        "Type": str(params.get("type") or ""),
        "Defs": _ordered(params.get("$defs")),
        "Items": _ordered(params.get("items")),
        "Required": list(params.get("required") or []),
        "Properties": _properties(params.get("properties")),
    }
    params_json = _omit_empty(
        [(_json_key(k), v, k in ("Defs", "Items")) for k, v in params_fields.items()]
    )
    params_json = OrderedObject(
        tuple((k, None if k == "required" and not v else v) for k, v in params_json.items)
    )
    fn_fields = {
        "Name": str(fn.get("name") or ""),
        "Description": str(fn.get("description") or ""),
        "Parameters": GoStruct(params_fields, params_json),
    }
    fn_json = OrderedObject(
        (
            ("name", fn_fields["Name"]),
            ("description", fn_fields["Description"]),
            ("parameters", params_json),
        )
    )
    tool_fields = {
        "Type": str(tool.get("type") or ""),
        "Items": _ordered(tool.get("items")),
        "Function": JSONStruct(fn_fields, fn_json),
    }
    tool_json = _omit_empty([(k.lower(), v, k == "Items") for k, v in tool_fields.items()])
    return JSONStruct(tool_fields, tool_json)


def _tool_call_view(call: ToolCall) -> GoStruct:
    args = OrderedMap({str(k): _ordered(v) for k, v in call.arguments.items()})
    function = GoStruct({"Index": call.index, "Name": call.name, "Arguments": args})
    return GoStruct({"ID": call.id, "Function": function})


def message_view(msg: Message) -> GoStruct:
    """A message as Ollama's api.Message struct (`.Role`, `.Content`, `.ToolCalls`, ...)."""
    return GoStruct(
        {
            "Role": msg.role,
            "Content": msg.content,
            "Thinking": msg.thinking,
            "Images": list(msg.images),
            "ToolCalls": [_tool_call_view(c) for c in msg.tool_calls],
            "ToolName": msg.tool_name,
            "ToolCallID": msg.tool_call_id,
        }
    )


# -- Ollama's Template.Execute ----------------------------------------------------------------
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
    level = think if isinstance(think, str) else ""
    enabled = bool(think) if not isinstance(think, str) else think not in ("", "false")
    return {"Think": enabled, "ThinkLevel": level, "IsThinkSet": think is not None}


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
    parts.append(_cut_after_response(template).execute(turn | thinking))
    return "".join(parts)


_LEGACY_SLOTS = {"system": "System", "user": "Prompt", "assistant": "Response"}


def _cut_after_response(template: Template) -> Template:
    """A copy of the template with everything after the first `.Response` removed."""
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


# -- chat and generate ------------------------------------------------------------------------
def build_chat_prompt(
    template: Template,
    messages: Sequence[Message],
    *,
    num_ctx: int,
    count_tokens: Callable[[str], int],
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: Think = None,
    truncate: bool = True,
    image_tokens: int = 0,
) -> Prompt:
    """The prompt for /api/chat, keeping as much recent history as fits in `num_ctx`.

    Walking back from the newest message, each longer suffix of the conversation (plus every
    system message before it) is rendered and counted; the first that does not fit stops the
    walk. The newest message is always kept. `image_tokens` is what one image costs in the
    context (Ollama counts 768 for models with a vision projector, else 0).
    """
    msgs = list(messages)
    first, system = len(msgs) - 1, []
    for i in range(len(msgs) - 2, -1, -1):
        system = [m for m in msgs[:i] if m.role == "system"]
        rendered = render(template, system + msgs[i:], tools=tools, think=think)
        size = count_tokens(rendered) + image_tokens * sum(len(m.images) for m in msgs[i:])
        if truncate and size > num_ctx:
            break
        first = i
    kept, images = _tag_images(msgs[first:])
    return Prompt(render(template, system + kept, tools=tools, think=think), images)


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
    num_ctx: int,
    count_tokens: Callable[[str], int],
    system: str | None = None,
    model_system: str = "",
    model_messages: Sequence[Message] = (),
    images: Sequence[bytes] = (),
    suffix: str = "",
    think: Think = None,
    has_context: bool = False,
    truncate: bool = True,
) -> Prompt:
    """The prompt for /api/generate (not raw). With a suffix, the template's fill-in-middle
    form renders `.Prompt`/`.Suffix` directly; otherwise it is the chat flow without tools."""
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
    return build_chat_prompt(
        template, msgs, num_ctx=num_ctx, count_tokens=count_tokens, think=think, truncate=truncate
    )
