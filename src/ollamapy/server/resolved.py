"""A model as the server uses it: its manifest's layers read into one value.

Resolving reads only the small layers (config, template, system, params, messages,
license); the model weights stay a path for the runner to map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamapy.store import Manifest, MediaType, ModelConfig, Store
from ollamapy.types import Digest, ModelName


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Everything a request needs to know about one installed model."""

    name: ModelName
    manifest: Manifest
    digest: Digest
    config: ModelConfig
    model_path: Path | None
    adapters: tuple[Path, ...] = ()
    projectors: tuple[Path, ...] = ()
    template: str = ""
    system: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)

    @property
    def model_digest(self) -> Digest | None:
        layer = self.manifest.last_layer(MediaType.MODEL)
        return None if layer is None else layer.digest


def resolve(store: Store, name: ModelName) -> ResolvedModel:
    """Read a model's manifest and small layers; `ModelNotFoundError` if it is absent."""
    entry = store.entry(name)  # reads and parses the manifest once, for its digest too
    manifest = entry.manifest
    model_layer = manifest.last_layer(MediaType.MODEL)
    return ResolvedModel(
        name=entry.name,
        manifest=manifest,
        digest=entry.digest,
        config=store.read_config(manifest),
        model_path=None if model_layer is None else store.blob_path(model_layer.digest),
        adapters=_paths(store, manifest, MediaType.ADAPTER),
        projectors=_paths(store, manifest, MediaType.PROJECTOR),
        template=store.read_layer_text(manifest, MediaType.TEMPLATE) or "",
        system=store.read_layer_text(manifest, MediaType.SYSTEM) or "",
        parameters=store.read_params(manifest),
        messages=store.read_messages(manifest),
        licenses=store.read_layer_texts(manifest, MediaType.LICENSE),
    )


def _paths(store: Store, manifest: Manifest, media_type: MediaType) -> tuple[Path, ...]:
    return tuple(store.blob_path(layer.digest) for layer in manifest.layers_of(media_type))
