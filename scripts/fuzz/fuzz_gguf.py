"""Atheris target: the GGUF header reader (`gguf.read_gguf`), fed files of fuzzed bytes.

Only `GGUFError` may come out of it. See `harness.py`.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ollamapy.errors import GGUFError

MODULE = "ollamapy.gguf"
_FILE = Path(tempfile.gettempdir()) / f"ollamapy-fuzz-{os.getpid()}.gguf"
atexit.register(lambda: _FILE.unlink(missing_ok=True))


def target(data: bytes) -> None:
    from ollamapy import gguf

    _FILE.write_bytes(data)
    try:
        info = gguf.read_gguf(_FILE, keep_arrays=None)
    except GGUFError:
        return
    info.model_info(verbose=True)  # what /api/show builds from it
    info.parameter_count  # noqa: B018 (a property that walks the tensors)


def seeds() -> Iterable[bytes]:
    """A small valid GGUF (the test suite's tiny model) and its header alone."""
    from tests.ggufs import write_tiny_gguf

    with tempfile.TemporaryDirectory() as tmp:
        data = write_tiny_gguf(Path(tmp) / "seed.gguf", chat_template="{{ .Prompt }}").read_bytes()
    yield data
    yield data[:1024]


if __name__ == "__main__":
    from harness import main

    main(MODULE, target, seeds)
