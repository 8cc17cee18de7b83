"""A scripted runner behind the `Runner` Protocol, and a real app that runs it.

Route tests drive the real app (`create_app`, the real store, scheduler, prompt rendering and
encoders) with this runner in place of a llama.cpp process: the script says what text the
"model" writes, and the runner records every request it was sent, so a test can check both
what reached the runner and what the client got, without patching anything inside the server.
Its tokenizer counts one token per whitespace-separated word, plus a BOS. Asked for logprobs,
each chunk carries one entry (`scripted_logprob`); asked not to truncate, a prompt longer
than num_ctx is refused as the real runner refuses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ollamapy.config import Config, parse_host
from ollamapy.errors import BadRequestError, RunnerError
from ollamapy.llm import (
    CompletionChunk,
    CompletionDone,
    CompletionRequest,
    Runner,
    RunnerInfo,
    TokenizeResponse,
)
from ollamapy.scheduler import ModelLoad, Scheduler
from ollamapy.types.logprobs import TokenLogprob
from tests.ggufs import write_tiny_gguf
from tests.scheduler.live import CHATML, LiveApp, create_model, serve_app
from tests.server.conftest import free_port

BOS = 1
TRAINED_CONTEXT = 131_072
"""The scripted model's trained context: long conversations fit (num_ctx is capped to it)."""

TOOLS_TEMPLATE_TEXT = (
    "{{- if .Tools }}<tools>{{ range .Tools }}{{ . }}{{ end }}</tools>{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}"
    "{{- if .ToolCalls }}<tool_call>{{ range .ToolCalls }}"
    '{"name":"{{ .Function.Name }}","arguments":{{ .Function.Arguments }}}{{ end }}'
    "</tool_call>{{ end }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)
TOOLS_TEMPLATE = f'TEMPLATE """{TOOLS_TEMPLATE_TEXT}"""\n'
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
"""A one-function toolset the tool-call and tool_choice tests share."""
"""Modelfile text for a ChatML template that supports tools (Qwen's tool-call format)."""


def scripted_logprob(index: int, text: str, top: int) -> TokenLogprob:
    """The entry the scripted runner sends with its `index`th chunk: the chunk's text as the
    token, logprob -(index+1)/10, and `top` alternatives (the token itself first)."""
    logprob = -(index + 1) / 10
    alternatives = tuple(
        TokenLogprob(
            text if k == 0 else f"alt{k}",
            logprob - k,
            tuple((text if k == 0 else f"alt{k}").encode()),
        )
        for k in range(top)
    )
    return TokenLogprob(text, logprob, tuple(text.encode()), alternatives)


def word_tokens(text: str) -> list[int]:
    """The fake tokenizer: a BOS, then one token per word (its length, for variety)."""
    return [BOS, *(len(word) for word in text.split())]


@dataclass
class Script:
    """What the scripted model writes, and what the runners were asked."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " there"])
    done_reason: Literal["stop", "length"] = "stop"
    stop_sequence: str | None = None
    """The stop string the "model" reports having hit (with done_reason "stop")."""
    prompt_cached: int = 0
    """How many prompt tokens the "model" reports its KV cache served."""
    hold: asyncio.Event | None = None
    """When set, the runner waits for it before each chunk (a slow model)."""
    fail_after: int | None = None
    """When set, the runner fails after that many chunks: `RunnerError("runner crashed")`."""
    requests: list[CompletionRequest] = field(default_factory=list)
    tokenized: list[str] = field(default_factory=list)
    embedded: list[str] = field(default_factory=list)
    cancelled: int = 0
    started: int = 0
    threads: list[int] = field(default_factory=list)
    """Every thread count the scheduler gave a runner (`set_threads`), in order."""


class ScriptedRunner:
    """A `Runner` whose completions follow a `Script`."""

    def __init__(self, script: Script, load: ModelLoad) -> None:
        self.script = script
        self.load = load
        self.closed = False
        script.started += 1

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return not self.closed

    @property
    def info(self) -> RunnerInfo:
        n_ctx = self.load.options.num_ctx
        return RunnerInfo(
            n_ctx, TRAINED_CONTEXT, 1, 16, 8, True, "scripted", 0, 0, False, False, False, 0
        )

    async def completion(
        self, request: CompletionRequest
    ) -> AsyncGenerator[CompletionChunk | CompletionDone, None]:
        self.script.requests.append(request)
        prompt = list(request.tokens) if request.tokens is not None else word_tokens(request.prompt)
        if not request.truncate and len(prompt) > self.load.options.num_ctx:
            raise BadRequestError("the input length exceeds the context length")
        generated: list[int] = []
        try:
            for i, text in enumerate(self.script.chunks[: self.script.fail_after]):
                if self.script.hold is not None:
                    await self.script.hold.wait()
                generated.append(len(text))
                logprobs = (
                    (scripted_logprob(i, text, request.top_logprobs),) if request.logprobs else ()
                )
                yield CompletionChunk(text, logprobs)
            if self.script.fail_after is not None:
                raise RunnerError("runner crashed")
        except (asyncio.CancelledError, GeneratorExit):
            self.script.cancelled += 1
            raise
        yield CompletionDone(
            self.script.done_reason,
            len(prompt),
            1000,
            len(generated),
            2000,
            prompt + generated,
            prompt_cached_count=min(self.script.prompt_cached, len(prompt)),
            stop_sequence=self.script.stop_sequence,
        )

    async def tokenize(self, content: str, *, add_special: bool = True) -> list[int]:
        self.script.tokenized.append(content)
        tokens = word_tokens(content)
        return tokens if add_special else tokens[1:]

    async def tokenize_prompt(self, content: str) -> TokenizeResponse:
        return TokenizeResponse(await self.tokenize(content))

    async def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join("x" * token for token in tokens if token != BOS)

    async def embed(
        self, contents: Sequence[str], truncate: bool = True
    ) -> tuple[npt.NDArray[np.float32], int]:
        """What `server.embed` asks of a runner (ProcessRunner's, not in the Protocol): a
        text's raw vector is [its length, 1, 2], its tokens counted as `word_tokens` does."""
        self.script.embedded.extend(contents)
        vectors = np.array([[len(text), 1.0, 2.0] for text in contents], dtype=np.float32)
        return vectors, sum(len(word_tokens(text)) for text in contents)

    async def set_threads(self, n_threads: int) -> None:
        self.script.threads.append(n_threads)

    async def wait(self) -> int:
        while not self.closed:
            await asyncio.sleep(0.05)
        return 0

    async def close(self) -> None:
        self.closed = True


def scripted_scheduler(script: Script) -> Scheduler[ScriptedRunner]:
    async def factory(load: ModelLoad) -> ScriptedRunner:
        return ScriptedRunner(script, load)

    return Scheduler(factory, default_keep_alive=300)


@dataclass
class ScriptedServer:
    """A live app on loopback whose runners follow `script`."""

    url: str
    script: Script
    live: LiveApp


MODEL = "scripted:latest"


def serve_scripted(
    tmp_path: Path, script: Script, modelfile_extra: str = CHATML
) -> Iterator[ScriptedServer]:
    """A real server (real store, scheduler, routes) with a model whose runners are scripted."""
    config = Config(host=parse_host(f"127.0.0.1:{free_port()}"), models_dir=tmp_path / "models")
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf", context_length=TRAINED_CONTEXT)
    for live in serve_app(config, scripted_scheduler(script)):
        create_model(live.url, MODEL, gguf_path, modelfile_extra)
        yield ScriptedServer(live.url, script, live)


def _check_protocol(runner: ScriptedRunner) -> Runner:
    return runner  # mypy checks that ScriptedRunner satisfies the Protocol
