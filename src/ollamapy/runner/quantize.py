"""`python -m ollamapy.runner.quantize SOURCE TARGET TYPE`: quantize a GGUF model.

llama.cpp's own quantizer (`llama_model_quantize`, the code behind `llama-quantize`) does
the work, with its per-tensor rules for each file type (a Q4_K_M file keeps some tensors at
Q6_K, tensors whose rows don't fit a K-quant block fall back to a legacy type...). It runs
in a process of its own, like a model runner: it needs the native library the server never
loads, it can take minutes, and cancelling it is then a kill that leaves nothing behind.

The child speaks JSON lines on stdout: `{"completed": bytes, "total": bytes}` as tensors
are written (bytes of the source tensors done, so the bar ends at the source's size, as
Ollama's does), then `{"done": true}`, or `{"error": "..."}` before a non-zero exit.
"""

from __future__ import annotations

import ctypes
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ollamapy.runner.launch import QUANTIZE_TYPES, quantize_type_named

_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_LOG_ERROR = 4  # ggml_log_level
_installed_callbacks: list[Any] = []


class Progress:
    """Turns llama.cpp's per-tensor log lines (`[  12/ 101] blk.1.attn_q.weight - ...`)
    into bytes done, using the source's tensor table for each tensor's size."""

    def __init__(self, sizes: dict[str, int], emit: Callable[[dict[str, Any]], None]) -> None:
        self.sizes = sizes
        self.total = sum(sizes.values())
        self.completed = 0
        self._current: str | None = None
        self._emit = emit

    def on_log(self, text: str) -> None:
        match = _TENSOR_LINE.match(text)
        if match is None:
            return
        self._finish_current()
        self._current = match.group(3)
        self._emit({"completed": self.completed, "total": self.total})

    def finish(self) -> None:
        self._finish_current()
        self.completed = self.total
        self._emit({"completed": self.completed, "total": self.total})

    def _finish_current(self) -> None:
        if self._current is not None:
            self.completed = min(self.total, self.completed + self.sizes.get(self._current, 0))
            self._current = None


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def quantize(source: Path, target: Path, file_type: str, progress: Progress) -> None:
    """Write `source` quantized to `file_type` at `target`; RuntimeError with llama.cpp's
    reason when it refuses."""
    import llama_cpp as lc  # the native library loads only in this child

    errors: list[str] = []

    def on_log(level: int, text: bytes | None, _user: Any) -> None:
        line = (text or b"").decode("utf-8", errors="replace")
        if level == _LOG_ERROR and line.strip():
            errors.append(line.strip())
        progress.on_log(line)

    callback = lc.llama_log_callback(on_log)
    _installed_callbacks.append(callback)  # llama.cpp keeps calling it: it must outlive us
    lc.llama_log_set(callback, ctypes.c_void_p(0))
    lc.llama_backend_init()
    params = lc.llama_model_quantize_default_params()
    params.ftype = QUANTIZE_TYPES[file_type]
    status = lc.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if status != 0:
        reason = errors[-1] if errors else f"llama_model_quantize returned {status}"
        raise RuntimeError(reason)
    progress.finish()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        _emit({"error": "usage: python -m ollamapy.runner.quantize SOURCE TARGET TYPE"})
        return 2
    from ollamapy import gguf
    from ollamapy.errors import BadRequestError

    source, target, name = Path(argv[0]), Path(argv[1]), argv[2]
    try:
        file_type = quantize_type_named(name)
        sizes = {t.name: t.size for t in gguf.read_gguf(source, keep_arrays=0).tensors}
        quantize(source, target, file_type, Progress(sizes, _emit))
    except (OSError, RuntimeError, BadRequestError) as exc:
        _emit({"error": str(exc)})
        return 1
    _emit({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
