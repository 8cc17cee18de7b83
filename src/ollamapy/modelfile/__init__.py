"""Ollama's Modelfile language: `parse(text) -> Modelfile`, and `str(modelfile)` back."""

from ollamapy.modelfile.model import MESSAGE_ROLES, Command, Instruction, Message, Modelfile
from ollamapy.modelfile.parser import decode, parse
from ollamapy.modelfile.source import (
    FromKind,
    FromSource,
    blob_digest,
    classify_from,
    expand_path,
    looks_like_path,
)

__all__ = [
    "MESSAGE_ROLES",
    "Command",
    "FromKind",
    "FromSource",
    "Instruction",
    "Message",
    "Modelfile",
    "blob_digest",
    "classify_from",
    "decode",
    "expand_path",
    "looks_like_path",
    "parse",
]
