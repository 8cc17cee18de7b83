"""Image paths typed into a prompt (`ollama run llava "describe ./photo.png"`), as Ollama's
CLI finds them for a vision model: each path that names an existing image file is read,
announced on stderr (`Added image '...'`) and taken out of the prompt text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TextIO

IMAGE_PATH = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|webp)\b")
"""A path that starts like one (`/`, `./`, `\\`, a drive letter) and ends in an image
extension; spaces may be escaped. It also matches things that are not files: only paths
that exist are used."""

MAX_IMAGE_BYTES = 100 * 1024 * 1024
"""Ollama's limit on one image file read by the CLI."""

_UNESCAPES = {f"\\{c}": c for c in " ()[]{}$&;'\\*?~"}

_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


class ImageFileError(ValueError):
    """A file the prompt names exists but cannot be sent as an image."""


def unescape(path: str) -> str:
    """A path as the shell would have unescaped it (`my\\ photo.png` -> `my photo.png`)."""
    return re.sub(r"\\.", lambda m: _UNESCAPES.get(m.group(0), m.group(0)), path)


def extract_images(text: str, err: TextIO) -> tuple[str, list[bytes]]:
    """The prompt without the image paths it names, and those images' bytes in order."""
    images: list[bytes] = []
    for found in IMAGE_PATH.findall(text):
        path = unescape(found)
        data = read_image(Path(path))
        if data is None:
            continue
        err.write(f"Added image '{path}'\n")
        for written in (f"'{path}'", f"'{found}'", found):
            text = text.replace(written, "")
        images.append(data)
    return text.strip(), images


def read_image(path: Path) -> bytes | None:
    """The file's bytes if it is a JPEG, PNG or WebP image; None if there is no such file."""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size > MAX_IMAGE_BYTES:
        raise ImageFileError("file size exceeds maximum limit (100MB)")
    data = path.read_bytes()
    kind = _content_type(data[:512])
    if kind not in ("image/jpeg", "image/png", "image/webp"):
        raise ImageFileError(f"invalid image type: {kind}")
    return data


def _content_type(head: bytes) -> str:
    """The MIME type the file starts like (the few image kinds that matter here)."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:14] == b"WEBPVP":
        return "image/webp"
    return "application/octet-stream" if b"\0" in head else "text/plain; charset=utf-8"
