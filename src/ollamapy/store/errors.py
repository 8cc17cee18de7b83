"""Store-specific errors, each a subclass of the project tree so routes map them to 400s."""

from __future__ import annotations

from ollamapy.errors import BadRequestError
from ollamapy.types import Digest


class InvalidManifestError(BadRequestError):
    """A manifest (from disk or from a registry) is not a well-formed schema 2 manifest."""


class InvalidConfigError(BadRequestError):
    """A model's config blob is not a well-formed `ConfigV2` JSON object."""


class DigestMismatchError(BadRequestError):
    """Bytes written to the store do not hash to the digest the caller promised."""

    def __init__(self, expected: Digest, actual: Digest) -> None:
        super().__init__(f"digest mismatch, expected {str(expected)!r}, got {str(actual)!r}")
        self.expected = expected
        self.actual = actual


class MissingBlobsError(BadRequestError):
    """A manifest was about to reference blobs the store does not hold (a half model);
    with replicas, another server may have deleted them a moment before."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"blob {missing[0]} not found: the model's files are incomplete")
        self.missing = missing
