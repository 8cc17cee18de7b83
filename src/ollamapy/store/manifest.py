"""Docker v2 schema 2 manifests with Ollama's layer media types.

Manifests arrive from registries as well as from disk, so parsing treats them as hostile:
the byte length is capped before decoding, every digest goes through `Digest.parse` (the
only way a string can later become a blob path), media types must be strings and sizes
must be int64-range, non-negative integers. Unknown keys are ignored, as Go's decoder does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ollamapy.errors import InvalidDigestError
from ollamapy.store.errors import InvalidManifestError
from ollamapy.store.gojson import go_json_bytes
from ollamapy.types import Digest

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Upper bound on a manifest's size; real ones are a few kilobytes."""

_MAX_INT64 = 2**63 - 1


class MediaType(StrEnum):
    """Ollama's layer media types (a layer may also carry one we do not know)."""

    MODEL = "application/vnd.ollama.image.model"
    TEMPLATE = "application/vnd.ollama.image.template"
    SYSTEM = "application/vnd.ollama.image.system"
    PARAMS = "application/vnd.ollama.image.params"
    LICENSE = "application/vnd.ollama.image.license"
    ADAPTER = "application/vnd.ollama.image.adapter"
    MESSAGES = "application/vnd.ollama.image.messages"
    PROJECTOR = "application/vnd.ollama.image.projector"


@dataclass(frozen=True, slots=True)
class Layer:
    """One blob a manifest points at (the config blob is described the same way)."""

    media_type: str
    digest: Digest
    size: int
    from_: str = ""
    """Ollama's `from`: the blob or model a layer was created from; omitted when empty."""

    def to_json(self) -> dict[str, object]:
        """Field order and `omitempty` exactly as Ollama's Go `Layer` struct."""
        data: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.from_:
            data["from"] = self.from_
        return data

    @classmethod
    def from_json(cls, raw: object, where: str) -> Layer:
        if not isinstance(raw, Mapping):
            raise InvalidManifestError(f"invalid manifest: {where} must be an object")
        media_type = raw.get("mediaType")
        if not isinstance(media_type, str):
            raise InvalidManifestError(f"invalid manifest: {where}.mediaType must be a string")
        try:
            digest = Digest.parse(raw.get("digest"))
        except InvalidDigestError as exc:
            raise InvalidManifestError(f"invalid manifest: {where}.digest: {exc}") from None
        return cls(media_type, digest, _size(raw.get("size"), where), _from(raw, where))


@dataclass(frozen=True, slots=True)
class Manifest:
    """A model: one config blob plus its ordered layers."""

    config: Layer
    layers: tuple[Layer, ...] = field(default_factory=tuple)
    schema_version: int = 2
    media_type: str = MANIFEST_MEDIA_TYPE

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Validate and decode manifest bytes; raises `InvalidManifestError` (HTTP 400)."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidManifestError(
                f"invalid manifest: {len(data)} bytes exceeds the {MAX_MANIFEST_BYTES} limit"
            )
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidManifestError("invalid manifest: not valid JSON") from None
        return cls.from_json(raw)

    @classmethod
    def from_json(cls, raw: object) -> Manifest:
        if not isinstance(raw, Mapping):
            raise InvalidManifestError("invalid manifest: must be a JSON object")
        version = raw.get("schemaVersion")
        if type(version) is not int or version != 2:
            raise InvalidManifestError(f"invalid manifest: unsupported schemaVersion {version!r}")
        media_type = raw.get("mediaType", MANIFEST_MEDIA_TYPE)
        if not isinstance(media_type, str):
            raise InvalidManifestError("invalid manifest: mediaType must be a string")
        config = Layer.from_json(raw.get("config"), "config")
        return cls(config, _layers(raw.get("layers")), version, media_type)

    def to_json(self) -> dict[str, object]:
        return {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }

    def to_bytes(self) -> bytes:
        """The bytes Ollama's `WriteManifest` would write for this manifest."""
        return go_json_bytes(self.to_json())

    @property
    def total_size(self) -> int:
        """Bytes of every blob, config included, as `ollama list` sums them."""
        return self.config.size + sum(layer.size for layer in self.layers)

    @property
    def digests(self) -> frozenset[Digest]:
        """Every blob this manifest keeps alive."""
        return frozenset({self.config.digest, *(layer.digest for layer in self.layers)})

    def layers_of(self, *media_types: str) -> tuple[Layer, ...]:
        """The layers with any of `media_types`, in manifest order."""
        return tuple(layer for layer in self.layers if layer.media_type in media_types)

    def last_layer(self, media_type: str) -> Layer | None:
        """The layer that wins for single-valued types (template, system): the last one."""
        found = self.layers_of(media_type)
        return found[-1] if found else None


def _layers(raw: object) -> tuple[Layer, ...]:
    if raw is None:  # Go writes a nil slice as null
        return ()
    if not isinstance(raw, list):
        raise InvalidManifestError("invalid manifest: layers must be an array")
    return tuple(Layer.from_json(item, f"layers[{index}]") for index, item in enumerate(raw))


def _size(raw: Any, where: str) -> int:
    if type(raw) is not int or not 0 <= raw <= _MAX_INT64:
        raise InvalidManifestError(f"invalid manifest: {where}.size must be a non-negative integer")
    return int(raw)


def _from(raw: Mapping[str, object], where: str) -> str:
    value = raw.get("from", "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidManifestError(f"invalid manifest: {where}.from must be a string")
    return value
