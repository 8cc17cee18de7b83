"""`ollama show MODEL`'s sectioned view (Model, Capabilities, Parameters, ..., License).

Each section is a title line (`  Model`) and a headerless table whose first column is empty,
which is what indents the rows by four spaces in Ollama's output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ollamapy.cli.format import human_number, render_table

Rows = list[list[str]]
JSON = Mapping[str, Any]

# Sections whose cells may be long prose: they wrap at 100 columns instead of 30.
_WIDE_SECTIONS = {"Template", "System", "License"}
_LIST_PREVIEW_WIDTH = 10


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def model_rows(resp: JSON) -> Rows:
    details: JSON = resp.get("details") or {}
    info: JSON = resp.get("model_info") or {}
    if info:
        arch = str(info.get("general.architecture", ""))
        rows = [["", "architecture", arch], ["", "parameters", _parameter_size(details, info)]]
        for key, label in (
            ("context_length", "context length"),
            ("embedding_length", "embedding length"),
        ):
            value = info.get(f"{arch}.{key}")
            if isinstance(value, int | float):
                rows.append(["", label, _number(value)])
    else:
        rows = [
            ["", "architecture", str(details.get("family", ""))],
            ["", "parameters", str(details.get("parameter_size", ""))],
        ]
    rows.append(["", "quantization", str(details.get("quantization_level", ""))])
    if resp.get("requires"):
        rows.append(["", "requires", str(resp["requires"])])
    return rows


def projector_rows(resp: JSON) -> Rows:
    """A vision model's projector, as Ollama lists it: architecture, parameters, embedding
    length and dimensions (the rows whose keys the projector has)."""
    info: JSON = resp.get("projector_info") or {}
    arch = str(info.get("general.architecture", ""))
    rows = [["", "architecture", arch]]
    count = info.get("general.parameter_count")
    if isinstance(count, int | float):
        rows.append(["", "parameters", human_number(int(count))])
    for key, label in (("embedding_length", "embedding length"), ("projection_dim", "dimensions")):
        value = info.get(f"{arch}.vision.{key}")
        if isinstance(value, int | float):
            rows.append(["", label, _number(value)])
    return rows


def _parameter_size(details: JSON, info: JSON) -> str:
    if details.get("parameter_size"):
        return str(details["parameter_size"])
    count = info.get("general.parameter_count")
    return human_number(int(count)) if isinstance(count, int | float) else ""


def capability_rows(resp: JSON) -> Rows:
    return [["", str(cap)] for cap in resp.get("capabilities") or []]


def parameter_rows(resp: JSON) -> Rows:
    text = str(resp.get("parameters") or "")
    return [["", *line.split()] for line in text.splitlines() if line.strip()]


def metadata_rows(resp: JSON) -> Rows:
    info: JSON = resp.get("model_info") or {}
    return [["", key, _metadata_value(info[key])] for key in sorted(info)]


def _metadata_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return _list_preview(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _list_preview(values: list[Any]) -> str:
    """`[a b ...+N more]`: as many items as fit in ten columns, like Ollama's metadata view."""
    shown, used = 0, 1
    for index, item in enumerate(values):
        width = len(_go_value(item)) + (2 if index else 0)
        if used + width > _LIST_PREVIEW_WIDTH and index:
            break
        used += width
        shown += 1
    items = " ".join(_go_value(v) for v in values[:shown])
    if shown < len(values):
        return f"[{items} ...+{len(values) - shown} more]"
    return f"[{items}]"


def _go_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def tensor_rows(resp: JSON) -> Rows:
    rows: Rows = []
    for tensor in resp.get("tensors") or []:
        shape = " ".join(str(dim) for dim in tensor.get("shape") or [])
        rows.append(["", str(tensor.get("name", "")), str(tensor.get("type", "")), f"[{shape}]"])
    return rows


def head_rows(text: str, limit: int = 2) -> Rows:
    """The first `limit` non-blank lines, then `...` if there were more."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    rows = [["", line] for line in lines[:limit]]
    if len(lines) > limit:
        rows.append(["", "..."])
    return rows


Section = tuple[str, Callable[[JSON], Rows], Callable[[JSON, bool], bool]]

SECTIONS: tuple[Section, ...] = (
    ("Model", model_rows, lambda r, v: True),
    ("Projector", projector_rows, lambda r, v: bool(r.get("projector_info"))),
    ("Capabilities", capability_rows, lambda r, v: bool(r.get("capabilities"))),
    ("Parameters", parameter_rows, lambda r, v: bool(r.get("parameters"))),
    ("Metadata", metadata_rows, lambda r, v: v and bool(r.get("model_info"))),
    ("Tensors", tensor_rows, lambda r, v: v and bool(r.get("tensors"))),
    ("System", lambda r: head_rows(str(r.get("system", ""))), lambda r, v: bool(r.get("system"))),
    (
        "License",
        lambda r: head_rows(_license_text(r.get("license"))),
        lambda r, v: bool(r.get("license")),
    ),
)


def _license_text(value: object) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value or "")


def render_show(resp: JSON, verbose: bool = False) -> str:
    """The full `ollama show MODEL` text."""
    out: list[str] = []
    for title, rows, present in SECTIONS:
        if not present(resp, verbose):
            continue
        width = 100 if title in _WIDE_SECTIONS else 30
        out.append(f"  {title}\n{render_table(rows(resp), cell_width=width)}\n")
    return "".join(out)
