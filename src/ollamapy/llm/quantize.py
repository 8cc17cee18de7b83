"""The server's handle on a quantizer child (`python -m ollamapy.runner.quantize`).

`quantize()` is a generator so `/api/create` can stream the child's progress as it comes.
Whoever stops iterating early (a client that went away, an error further up) closes the
generator, and closing kills the child: a cancelled create leaves no process running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ollamapy.errors import OllamaError

STDERR_TAIL_BYTES = 4096


class QuantizeError(OllamaError):
    """The quantizer failed on a model that passed our checks (HTTP 500)."""


@dataclass(frozen=True, slots=True)
class QuantizeProgress:
    """Bytes of the source model quantized so far, of `total`."""

    completed: int
    total: int


def quantize(source: Path, target: Path, file_type: str) -> Generator[QuantizeProgress, None, None]:
    """Quantize the GGUF at `source` to `file_type`, writing `target`; yields progress.

    Raises `QuantizeError` with the child's reason when it fails or dies.
    """
    command = [sys.executable, "-m", "ollamapy.runner.quantize", str(source), str(target)]
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(
            [*command, file_type],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            error = yield from _progress(child)
            status = child.wait()
        finally:
            _stop(child)
        if error is None and status != 0:
            error = _tail(stderr) or f"quantizer exited with status {status}"
    if error is not None:
        raise QuantizeError(f"error quantizing model: {error}")


def _progress(child: subprocess.Popen[bytes]) -> Generator[QuantizeProgress, None, str | None]:
    """Yield the child's progress lines; return its error message, if it sent one."""
    assert child.stdout is not None
    for raw in child.stdout:
        try:
            message = json.loads(raw)
        except ValueError:
            continue  # not ours: a native library writing to stdout
        if not isinstance(message, dict):
            continue
        if "error" in message:
            return str(message["error"])
        if "completed" in message and "total" in message:
            yield QuantizeProgress(int(message["completed"]), int(message["total"]))
    return None


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait()
    if child.stdout is not None:
        child.stdout.close()


def _tail(stderr: IO[bytes]) -> str:
    """The last line the child wrote to stderr (an abort message, a traceback's last)."""
    stderr.seek(0, 2)
    stderr.seek(max(0, stderr.tell() - STDERR_TAIL_BYTES))
    text = stderr.read().decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
