"""The config blob every manifest points at, shaped like Ollama's Go `ConfigV2`.

`ollama show` and `ollama list` read family, parameter size and quantization from here
instead of opening the multi-gigabyte model file, so the field names and their order
must match what Ollama writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ollamapy.store.errors import InvalidConfigError
from ollamapy.store.gojson import go_json_bytes

MAX_CONFIG_BYTES = 4 * 1024 * 1024

_REQUIRED_STRINGS = ("model_format", "model_family", "model_type", "file_type")
_OPTIONAL_STRINGS = ("renderer", "parser", "requires", "remote_host", "remote_model")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Model metadata: `model_type` is the parameter size, `file_type` the quantization."""

    model_format: str = "gguf"
    model_family: str = ""
    model_families: tuple[str, ...] = ()
    model_type: str = ""
    file_type: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: tuple[str, ...] = ()
    context_length: int = 0
    embedding_length: int = 0
    base_name: str = ""
    architecture: str = "amd64"
    os: str = "linux"
    rootfs_type: str = "layers"
    diff_ids: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, data: bytes) -> ModelConfig:
        """Decode config JSON; missing keys take Go's zero values, wrong types are a 400."""
        if len(data) > MAX_CONFIG_BYTES:
            raise InvalidConfigError(f"invalid model config: larger than {MAX_CONFIG_BYTES} bytes")
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidConfigError("invalid model config: not valid JSON") from None
        return cls.from_json(raw)

    @classmethod
    def from_json(cls, raw: object) -> ModelConfig:
        if not isinstance(raw, Mapping):
            raise InvalidConfigError("invalid model config: must be a JSON object")
        rootfs = raw.get("rootfs")
        if rootfs is None:
            rootfs = {}
        if not isinstance(rootfs, Mapping):
            raise InvalidConfigError("invalid model config: rootfs must be an object")
        strings = {key: _string(raw, key) for key in (*_REQUIRED_STRINGS, *_OPTIONAL_STRINGS)}
        return cls(
            **strings,
            model_families=_strings(raw, "model_families"),
            capabilities=_strings(raw, "capabilities"),
            context_length=_int(raw, "context_length"),
            embedding_length=_int(raw, "embedding_length"),
            base_name=_string(raw, "base_name"),
            architecture=_string(raw, "architecture"),
            os=_string(raw, "os"),
            rootfs_type=_string(rootfs, "type"),
            diff_ids=_strings(rootfs, "diff_ids"),
        )

    def to_json(self) -> dict[str, object]:
        """Keys in `ConfigV2` field order, honouring its `omitempty` tags."""
        data: dict[str, object] = {
            "model_format": self.model_format,
            "model_family": self.model_family,
            "model_families": list(self.model_families) or None,
            "model_type": self.model_type,
            "file_type": self.file_type,
        }
        optional: dict[str, object] = {
            **{key: getattr(self, key) for key in _OPTIONAL_STRINGS},
            "capabilities": list(self.capabilities),
            "context_length": self.context_length,
            "embedding_length": self.embedding_length,
            "base_name": self.base_name,
        }
        data.update({key: value for key, value in optional.items() if value})
        data["architecture"] = self.architecture
        data["os"] = self.os
        data["rootfs"] = {"type": self.rootfs_type, "diff_ids": list(self.diff_ids) or None}
        return data

    def to_bytes(self) -> bytes:
        """The config blob as Ollama's `json.NewEncoder(...).Encode` writes it."""
        return go_json_bytes(self.to_json())


def _string(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidConfigError(f"invalid model config: {key} must be a string")
    return value


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidConfigError(f"invalid model config: {key} must be an array of strings")
    return tuple(value)


def _int(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    if value is None:
        return 0
    if type(value) is not int:
        raise InvalidConfigError(f"invalid model config: {key} must be an integer")
    return int(value)
