"""The model store: blobs and manifests laid out exactly as Ollama lays out `$OLLAMA_MODELS`."""

from ollamapy.store.errors import (
    DigestMismatchError,
    InvalidConfigError,
    InvalidManifestError,
    MissingBlobsError,
)
from ollamapy.store.gojson import go_json_bytes
from ollamapy.store.lock import StoreBusyError, StoreLock
from ollamapy.store.manifest import (
    CONFIG_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    Layer,
    Manifest,
    MediaType,
)
from ollamapy.store.model_config import ModelConfig
from ollamapy.store.store import MAX_TEXT_BYTES, ModelEntry, Store, is_partial_name

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "MAX_MANIFEST_BYTES",
    "MAX_TEXT_BYTES",
    "DigestMismatchError",
    "InvalidConfigError",
    "InvalidManifestError",
    "Layer",
    "Manifest",
    "MediaType",
    "MissingBlobsError",
    "ModelConfig",
    "ModelEntry",
    "Store",
    "StoreBusyError",
    "StoreLock",
    "go_json_bytes",
    "is_partial_name",
]
