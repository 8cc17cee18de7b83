"""Content digests (`sha256:<64 hex>`), the only thing allowed to become a blob filename."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ollamapy.errors import InvalidDigestError

_DIGEST_RE = re.compile(r"sha256[:-]([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated sha256 digest.

    Both spellings Ollama uses are accepted on input (`sha256:<hex>` on the wire,
    `sha256-<hex>` as a filename); `str()` gives the wire form.

    >>> Digest.parse("sha256-" + "0" * 64).filename
    'sha256-0000000000000000000000000000000000000000000000000000000000000000'
    """

    hex: str

    @classmethod
    def parse(cls, text: object) -> Digest:
        if not isinstance(text, str):
            raise InvalidDigestError("invalid digest format")
        match = _DIGEST_RE.fullmatch(text)
        if match is None:
            raise InvalidDigestError(f"invalid digest format: {text[:80]!r}")
        return cls(match.group(1))

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).hexdigest())

    @property
    def filename(self) -> str:
        return f"sha256-{self.hex}"

    @property
    def short(self) -> str:
        """The 12-character id `ollama list` prints."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"sha256:{self.hex}"
