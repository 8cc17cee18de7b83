"""Pull models from and push them to OCI/docker registries, as Ollama does.

Both operations are async generators of Ollama's progress events, for the server to
stream. This package may use the store, types, errors and config, never the server.
"""

from ollamapy.registry.errors import (
    BlobDigestMismatchError,
    InsecureProtocolError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnauthorizedError,
)
from ollamapy.registry.keys import IdentityKey, default_key_path, load_or_create_key
from ollamapy.registry.options import RegistryOptions, TransferSettings
from ollamapy.registry.progress import Event
from ollamapy.registry.pull import pull_model
from ollamapy.registry.push import push_model
from ollamapy.registry.remote import Remote

__all__ = [
    "BlobDigestMismatchError",
    "Event",
    "IdentityKey",
    "InsecureProtocolError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryOptions",
    "RegistryUnauthorizedError",
    "Remote",
    "TransferSettings",
    "default_key_path",
    "load_or_create_key",
    "pull_model",
    "push_model",
]
