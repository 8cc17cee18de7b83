"""Atheris target: the image decoder of chat messages (`chat.messages.decode_image`).

Only `BadRequestError` may come out of it. See `harness.py`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ollamapy.errors import BadRequestError

MODULE = "ollamapy.chat.messages"


def target(data: bytes) -> None:
    from ollamapy.chat.messages import decode_image

    text = data.decode("utf-8", errors="surrogateescape")
    try:
        decode_image(text)
    except BadRequestError:
        return


def seeds() -> Iterable[bytes]:
    yield (
        b"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAAB"
        b"JRU5ErkJggg=="
    )
    yield b"data:image/png;base64,AAAA"
    yield b"////"


if __name__ == "__main__":
    from harness import main

    main(MODULE, target, seeds)
