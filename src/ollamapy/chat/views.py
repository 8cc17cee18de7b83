"""What templates see: messages and tools as the Go structs Ollama's templates range over.

Ollama's templates read `api.Message`, `api.Tool` and their parts as Go values: fields by
their Go names, printed the way Go's fmt prints structs, and marshalled to JSON in Go's field
order with `omitempty` rules. These views reproduce that for the template engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ollamapy.chat.messages import Message, ToolCall
from ollamapy.template import OrderedObject, marshal


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
