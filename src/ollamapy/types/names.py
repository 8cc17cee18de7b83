"""Model names: `[host/][namespace/]model[:tag]`, with Ollama's defaults and limits.

A name is the only user input that becomes a manifest path, so every part is checked
against a strict character set; `..`, separators inside parts and absolute paths can
never get through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ollamapy.errors import InvalidNameError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART_RULES: dict[str, tuple[re.Pattern[str], int]] = {
    "host": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*"), 350),
    "namespace": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*"), 80),
    "model": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*"), 80),
    "tag": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), 80),
}


@dataclass(frozen=True, slots=True)
class ModelName:
    """A fully qualified, validated model name.

    >>> ModelName.parse("smollm2:135m").display
    'smollm2:135m'
    >>> ModelName.parse("example.com:5000/me/mine").manifest_parts
    ('example.com:5000', 'me', 'mine', 'latest')
    """

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: object) -> ModelName:
        if not isinstance(text, str) or not text.strip():
            raise InvalidNameError("invalid model name")
        raw = text.strip()
        for scheme in ("https://", "http://"):
            if raw.startswith(scheme):
                raw = raw[len(scheme) :]
        raw, _, _digest = raw.partition("@")
        rest, tag = _split_tag(raw)
        parts = rest.split("/")
        if len(parts) > 3 or any(part == "" for part in parts):
            raise InvalidNameError(f"invalid model name: {text!r}")
        host = parts[-3] if len(parts) == 3 else DEFAULT_HOST
        namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
        name = cls(host, namespace, parts[-1], tag or DEFAULT_TAG)
        name.validate(original=text)
        return name

    def validate(self, original: str = "") -> None:
        for kind, value in zip(
            ("host", "namespace", "model", "tag"), self.manifest_parts, strict=True
        ):
            pattern, limit = _PART_RULES[kind]
            if len(value) > limit or not pattern.fullmatch(value):
                raise InvalidNameError(f"invalid model name: {original or self.display!r}")

    @property
    def manifest_parts(self) -> tuple[str, str, str, str]:
        return (self.host, self.namespace, self.model, self.tag)

    @property
    def manifest_path(self) -> PurePosixPath:
        """Path under `manifests/`, as Ollama lays it out."""
        return PurePosixPath(*self.manifest_parts)

    @property
    def display(self) -> str:
        """The shortest form, as `ollama list` prints it (`smollm2:135m`, `me/mine:latest`)."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def key(self) -> tuple[str, ...]:
        """Case-insensitive identity: two names with equal keys are the same model."""
        return tuple(part.lower() for part in self.manifest_parts)

    def same_as(self, other: ModelName) -> bool:
        return self.key == other.key

    def __str__(self) -> str:
        return self.display


def _split_tag(raw: str) -> tuple[str, str]:
    """Split `host:port/ns/model:tag` at the tag's colon, never at a port's."""
    slash = raw.rfind("/")
    colon = raw.rfind(":")
    if colon > slash:
        return raw[:colon], raw[colon + 1 :] or _empty_tag(raw)
    return raw, ""


def _empty_tag(raw: str) -> str:
    raise InvalidNameError(f"invalid model name: {raw!r}")
