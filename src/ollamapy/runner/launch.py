"""How the server starts its child processes: their command lines and first words.

Pure (no llama.cpp, no I/O), so that `ollamapy.llm` can import it without the engine:

* the runner's command line (`LaunchArgs`: `python -m ollamapy.runner` + `to_argv()`),
* the single JSON line a runner prints on stdout once it listens (`ListeningLine`),
* the file types the quantizer child (`python -m ollamapy.runner.quantize`) accepts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ollamapy.errors import BadRequestError
from ollamapy.runner.protocol import ProtocolError, json_field, json_object

QUANTIZE_TYPES = {"F32": 0, "F16": 1, "Q8_0": 7, "Q4_K_S": 14, "Q4_K_M": 15}
"""The file types `ollama create --quantize` accepts, as llama.cpp's `llama_ftype` values;
the quantizer child (`ollamapy.runner.quantize`) takes the name on its command line."""
_QUANTIZE_ALIASES = {"Q4_K": "Q4_K_M"}

DEFAULT_DRAFT_MAX = 16
"""Most tokens speculative decoding (`runner.speculate`) drafts per step when neither the
request nor the server says (`OLLAMA_DRAFT_MAX`, whose default this is too)."""


def quantize_type_named(name: str) -> str:
    """The canonical file type for a user's spelling (`q4_k_m` -> `Q4_K_M`), else a
    `BadRequestError` naming the supported types, as Ollama words it."""
    key = name.strip().upper()
    key = _QUANTIZE_ALIASES.get(key, key)
    if key not in QUANTIZE_TYPES:
        supported = ", ".join(QUANTIZE_TYPES)
        raise BadRequestError(
            f"unsupported quantization type {name} - supported types are {supported}"
        )
    return key


@dataclass(frozen=True, slots=True)
class LaunchArgs:
    """The runner's command line: `python -m ollamapy.runner` + `to_argv()`.

    `num_ctx` is the context of ONE sequence; the runner allocates `num_ctx * parallel`.
    `num_gpu` -1 means "all layers if this build can offload, else none"; `num_thread` 0
    means "the number of physical cores". `use_mmap` None lets llama.cpp decide.
    `draft_max` is the default of the `draft_max` option (speculative decoding; 0 = off).
    `port` 0 makes the runner pick a free port and announce it on stdout.
    `prompt_cache` is the host-RAM prompt cache's size in bytes (0: none), and
    `prompt_cache_dir` where its files outlive the runner (None: not saved).
    """

    model: str
    port: int = 0
    host: str = "127.0.0.1"
    num_ctx: int = 4096
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int = 0
    num_thread: int = 0
    parallel: int = 1
    use_mmap: bool | None = None
    use_mlock: bool = False
    flash_attention: bool | None = None
    kv_cache_type: str | None = None
    draft_max: int = DEFAULT_DRAFT_MAX
    embedding: bool = False
    lora: tuple[str, ...] = ()
    mmproj: str | None = None
    """The vision projector (an mmproj GGUF, architecture `clip`) loaded with the model."""
    parent_pid: int | None = None
    verbose: bool = False
    prompt_cache: int = 0
    prompt_cache_dir: str | None = None

    def to_argv(self) -> list[str]:
        argv = ["--model", self.model, "--port", str(self.port), "--host", self.host]
        argv += ["--ctx-size", str(self.num_ctx), "--batch-size", str(self.num_batch)]
        argv += ["--n-gpu-layers", str(self.num_gpu), "--main-gpu", str(self.main_gpu)]
        argv += ["--threads", str(self.num_thread), "--parallel", str(self.parallel)]
        if self.use_mmap is not None:
            argv.append("--mmap" if self.use_mmap else "--no-mmap")
        if self.use_mlock:
            argv.append("--mlock")
        if self.flash_attention is not None:
            argv.append("--flash-attn" if self.flash_attention else "--no-flash-attn")
        if self.kv_cache_type:
            argv += ["--kv-cache-type", self.kv_cache_type]
        if self.draft_max != DEFAULT_DRAFT_MAX:
            argv += ["--draft-max", str(self.draft_max)]
        if self.embedding:
            argv.append("--embedding")
        for path in self.lora:
            argv += ["--lora", path]
        if self.mmproj:
            argv += ["--mmproj", self.mmproj]
        if self.parent_pid is not None:
            argv += ["--parent-pid", str(self.parent_pid)]
        if self.verbose:
            argv.append("--verbose")
        if self.prompt_cache:
            argv += ["--prompt-cache", str(self.prompt_cache)]
        if self.prompt_cache_dir:
            argv += ["--prompt-cache-dir", self.prompt_cache_dir]
        return argv

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> LaunchArgs:
        ns = _argument_parser().parse_args(list(argv))
        return cls(
            model=ns.model,
            port=ns.port,
            host=ns.host,
            num_ctx=ns.ctx_size,
            num_batch=ns.batch_size,
            num_gpu=ns.n_gpu_layers,
            main_gpu=ns.main_gpu,
            num_thread=ns.threads,
            parallel=ns.parallel,
            use_mmap=ns.mmap,
            use_mlock=ns.mlock,
            flash_attention=ns.flash_attn,
            kv_cache_type=ns.kv_cache_type,
            draft_max=ns.draft_max,
            embedding=ns.embedding,
            lora=tuple(ns.lora),
            mmproj=ns.mmproj,
            parent_pid=ns.parent_pid,
            verbose=ns.verbose,
            prompt_cache=ns.prompt_cache,
            prompt_cache_dir=ns.prompt_cache_dir,
        )


def _argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ollamapy.runner", description="Serve one model.")
    p.add_argument("--model", required=True, help="path to the GGUF file")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ctx-size", type=int, default=4096, help="context per sequence")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--n-gpu-layers", type=int, default=-1)
    p.add_argument("--main-gpu", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--mmap", dest="mmap", action="store_true", default=None)
    p.add_argument("--no-mmap", dest="mmap", action="store_false")
    p.add_argument("--mlock", action="store_true")
    p.add_argument("--flash-attn", dest="flash_attn", action="store_true", default=None)
    p.add_argument("--no-flash-attn", dest="flash_attn", action="store_false")
    p.add_argument("--kv-cache-type", default=None, choices=["f16", "q8_0", "q4_0"])
    p.add_argument("--draft-max", type=int, default=DEFAULT_DRAFT_MAX, help="0 = no drafts")
    p.add_argument("--embedding", action="store_true")
    p.add_argument("--lora", action="append", default=[])
    p.add_argument("--mmproj", default=None, help="the vision projector GGUF")
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--prompt-cache", type=int, default=0, help="host prompt cache bytes")
    p.add_argument("--prompt-cache-dir", default=None, help="where the prompt cache is saved")
    return p


@dataclass(frozen=True, slots=True)
class ListeningLine:
    """The one JSON line a runner prints on stdout once its HTTP socket is bound.

    The model is still loading at that point; poll `GET /health` until it says "ok".
    """

    port: int
    pid: int

    def to_json(self) -> dict[str, Any]:
        return {"event": "listening", "port": self.port, "pid": self.pid}

    @classmethod
    def from_json(cls, raw: object) -> ListeningLine:
        data = json_object(raw, "listening line")
        if data.get("event") != "listening":
            raise ProtocolError("not a listening line")
        return cls(port=json_field(data, "port", int, 0), pid=json_field(data, "pid", int, 0))
