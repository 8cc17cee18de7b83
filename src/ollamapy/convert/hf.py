"""Reading the small JSON files of a Hugging Face (and sentence-transformers) model directory.

Everything here is bounded and turns malformed input into `BadRequestError` that names the
file, because these directories come from users (`ollama create` with a Safetensors folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollamapy.errors import BadRequestError

MAX_JSON_BYTES = 64 * 1024 * 1024
"""Largest config/tokenizer JSON we parse (real tokenizer.json files are a few MB)."""

CONFIG_FILE = "config.json"


def read_json(path: Path) -> Any:
    """Parse a JSON file, refusing oversized or malformed ones with a clear message."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise BadRequestError(f"{path.name} is too large ({path.stat().st_size} bytes)")
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadRequestError(f"{path.name} not found in {path.parent}") from exc
    except OSError as exc:
        raise BadRequestError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequestError(f"{path.name} is not valid JSON: {exc}") from exc


def read_json_object(path: Path) -> dict[str, Any]:
    """Like `read_json` but the top level must be an object."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise BadRequestError(f"{path.name} must contain a JSON object")
    return value


def read_optional_object(path: Path) -> dict[str, Any]:
    """An optional JSON object file: `{}` when it is absent."""
    return read_json_object(path) if path.is_file() else {}


def load_config(model_dir: Path) -> dict[str, Any]:
    """The model's `config.json` (required: it names the architecture)."""
    if not model_dir.is_dir():
        raise BadRequestError(f"{model_dir} is not a directory")
    return read_json_object(model_dir / CONFIG_FILE)


def architecture_of(config: dict[str, Any]) -> str:
    """The first entry of `architectures`, the class name Transformers would instantiate."""
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise BadRequestError(f"{CONFIG_FILE} has no 'architectures' list naming the model class")
    return archs[0]


@dataclass(frozen=True)
class SentenceTransformersInfo:
    """What a sentence-transformers export adds on top of the bare Transformers model."""

    pooling: str | None
    """"mean", "cls" or "last"; None when the directory has no Pooling module."""
    max_seq_length: int | None
    """The tokenizer truncation length the embedding model was trained with."""
    normalize: bool
    """Whether a Normalize module follows pooling (L2-normalised output)."""


_POOLING_FLAGS = (
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_lasttoken", "last"),
)


def read_sentence_transformers(model_dir: Path) -> SentenceTransformersInfo:
    """Pooling, truncation length and normalisation from the sentence-transformers files."""
    modules = (
        read_json(model_dir / "modules.json") if (model_dir / "modules.json").is_file() else []
    )
    if not isinstance(modules, list):
        raise BadRequestError("modules.json must contain a JSON list")
    types = {str(m.get("type", "")): m for m in modules if isinstance(m, dict)}
    pooling = None
    for type_name, module in types.items():
        if type_name.endswith(".Pooling"):
            pooling = _pooling_mode(model_dir / str(module.get("path", "")) / "config.json")
    normalize = any(t.endswith(".Normalize") for t in types)
    st_config = read_optional_object(model_dir / "sentence_bert_config.json")
    max_seq = st_config.get("max_seq_length")
    if max_seq is not None and (not isinstance(max_seq, int) or max_seq <= 0):
        raise BadRequestError(f"sentence_bert_config.json: invalid max_seq_length {max_seq!r}")
    return SentenceTransformersInfo(pooling, max_seq, normalize)


def _pooling_mode(path: Path) -> str:
    """Map a Pooling module config (old boolean flags or newer `pooling_mode`) to a mode."""
    config = read_json_object(path)
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        aliases = {"mean": "mean", "cls": "cls", "lasttoken": "last"}
        if mode in aliases:
            return aliases[mode]
        raise BadRequestError(f"unsupported sentence-transformers pooling mode {mode!r}")
    known = dict(_POOLING_FLAGS)
    others = [k for k, v in config.items() if k.startswith("pooling_mode_") and k not in known]
    if unsupported := [k for k in others if config[k] is True]:
        raise BadRequestError(f"unsupported sentence-transformers pooling {unsupported[0]!r}")
    chosen = [name for flag, name in _POOLING_FLAGS if config.get(flag) is True]
    if len(chosen) != 1:
        raise BadRequestError(
            f"{path.parent.name}/config.json: need exactly one of mean/cls/last-token pooling"
        )
    return chosen[0]
