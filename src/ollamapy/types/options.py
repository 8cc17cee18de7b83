"""Model options: the table of every key Ollama knows, their types, defaults and kind.

Load-time options (`RunnerOptions`) change how a runner process is started and force a
reload when they differ; sampling options (`SamplingOptions`) travel with each request.
Keys Ollama does not know are logged and ignored; a known key with a wrong type is a 400.
The table and the defaults follow Ollama's current `api/types.go` (`Options`, `Runner`,
`DefaultOptions`): the options it has removed (`REMOVED_OPTIONS`) are unknown keys now,
ignored in a request's options, and skipped with a warning in a Modelfile as its parser
skips them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ollamapy.errors import BadRequestError

log = logging.getLogger(__name__)

Kind = Literal["int", "float", "bool", "strings"]


@dataclass(frozen=True, slots=True)
class OptionSpec:
    kind: Kind
    load_time: bool


OPTION_SPECS: dict[str, OptionSpec] = {
    # load-time
    "num_ctx": OptionSpec("int", True),
    "num_batch": OptionSpec("int", True),
    "num_gpu": OptionSpec("int", True),
    "main_gpu": OptionSpec("int", True),
    "use_mmap": OptionSpec("bool", True),
    "num_thread": OptionSpec("int", True),
    # per request
    "num_keep": OptionSpec("int", False),
    "seed": OptionSpec("int", False),
    "num_predict": OptionSpec("int", False),
    "top_k": OptionSpec("int", False),
    "top_p": OptionSpec("float", False),
    "min_p": OptionSpec("float", False),
    "typical_p": OptionSpec("float", False),
    "repeat_last_n": OptionSpec("int", False),
    "temperature": OptionSpec("float", False),
    "repeat_penalty": OptionSpec("float", False),
    "presence_penalty": OptionSpec("float", False),
    "frequency_penalty": OptionSpec("float", False),
    "stop": OptionSpec("strings", False),
    # ours (not Ollama's): speculative decoding by prompt lookup, see runner/speculate.py
    "draft_max": OptionSpec("int", False),
}

DEPRECATED_PARAMETERS = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
)
"""Options Ollama has removed that its Modelfile parser still accepts, with a warning, and
drops (its `deprecatedParameters`)."""

REMOVED_OPTIONS = DEPRECATED_PARAMETERS | {"numa", "tfs_z"}
"""Every option Ollama once had and has removed: ignored in a request's options."""

_TYPE_WORDS = {"int": "integer", "float": "float", "bool": "boolean", "strings": "string array"}

LOAD_MINIMUMS: dict[str, tuple[int, str]] = {
    "num_ctx": (1, "a positive number"),
    "num_batch": (1, "a positive number"),
    "num_thread": (0, "0 (automatic) or more"),
    "num_gpu": (-1, "-1 (automatic) or more"),
    "main_gpu": (0, "0 or more"),
}
"""The smallest value of each numeric load option that a runner can start with. Below it
the runner would crash while loading (a 500 after unloading whatever ran before), so such
a value is a 400 up front, on every route, before the scheduler sees the load."""

REQUEST_MINIMUMS: dict[str, tuple[int, str]] = {"draft_max": (0, "0 (no drafts) or more")}
"""The same for per-request options that have a floor."""


def validate_options(raw: object) -> dict[str, Any]:
    """Check a JSON `options` object; return the known keys with normalised values."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise BadRequestError("options must be an object")
    result: dict[str, Any] = {}
    for key, value in raw.items():
        spec = OPTION_SPECS.get(key)
        if spec is None:
            # Ollama's words, removed ones too; escaped (as slog quotes), so a key with a
            # newline cannot forge a log line
            log.warning("invalid option provided: %s", key.encode("unicode_escape").decode())
            continue
        if value is None:
            continue
        result[key] = _coerce_json(key, spec.kind, value)
    check_load_limits(result)
    _check_minimums(result, REQUEST_MINIMUMS)
    return result


def check_load_limits(options: Mapping[str, Any]) -> None:
    """A 400 naming the first load option a runner cannot start with (see LOAD_MINIMUMS)."""
    _check_minimums(options, LOAD_MINIMUMS)


def _check_minimums(options: Mapping[str, Any], minimums: Mapping[str, tuple[int, str]]) -> None:
    for key, (minimum, words) in minimums.items():
        value = options.get(key)
        if isinstance(value, int) and value < minimum:
            raise BadRequestError(f"option {key!r} must be {words}, got {value}")


def _coerce_json(key: str, kind: Kind, value: object) -> Any:
    error = BadRequestError(f"option {key!r} must be of type {_TYPE_WORDS[kind]}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise error
        return value
    if kind == "strings":
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise error
        return list(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise error
        return int(value)
    return float(value)


def is_deprecated_parameter(key: str) -> bool:
    """A Modelfile PARAMETER Ollama still accepts but ignores (see DEPRECATED_PARAMETERS)."""
    return key in DEPRECATED_PARAMETERS


def parse_option_text(key: str, text: str) -> Any:
    """Parse a Modelfile `PARAMETER key value` value; raises ValueError naming the problem
    (callers skip `is_deprecated_parameter` keys first: they are not options any more)."""
    spec = OPTION_SPECS.get(key)
    if spec is None:
        raise ValueError(f"unknown parameter '{key}'")
    try:
        if spec.kind == "int":
            return int(text)
        if spec.kind == "float":
            return float(text)
        if spec.kind == "bool":
            return _parse_bool(text)
    except ValueError:
        raise ValueError(
            f"invalid {_TYPE_WORDS[spec.kind]} value {text!r} for parameter '{key}'"
        ) from None
    return [text]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "t", "true"}:
        return True
    if lowered in {"0", "f", "false"}:
        return False
    raise ValueError(text)


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Options fixed when a runner loads a model; a change means a reload."""

    num_ctx: int = 4096
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int = 0
    num_thread: int = 0
    use_mmap: bool | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RunnerOptions:
        """The load options among `options`; a 400 for a value no runner can start with."""
        check_load_limits(options)
        return cls(**_pick(cls, options))


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """Per-request generation settings, with Ollama's current defaults (`DefaultOptions`:
    `repeat_penalty` 1.0 since Ollama stopped penalising by default; it was 1.1)."""

    num_keep: int = 4
    seed: int = -1
    num_predict: int = -1
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    temperature: float = 0.8
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    draft_max: int | None = None
    """Most tokens speculative decoding drafts per step; 0 turns it off; None leaves it to
    the runner's default (`OLLAMA_DRAFT_MAX`)."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SamplingOptions:
        picked = _pick(cls, options)
        if "stop" in picked:
            picked["stop"] = tuple(picked["stop"])
        return cls(**picked)


def _pick(cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in options.items() if key in names}
