"""What a completion yields, from the runner handle to the edge: typed events.

The pipeline turns the runner's chunks into `Delta`s (answer text and tool calls, already
separated by the chat parsers) and ends with one `Final` carrying the stats. Each dialect's
encoder (native NDJSON, OpenAI, ...) turns these into its own wire shape once, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from ollamapy.chat.messages import ToolCall
from ollamapy.types.logprobs import TokenLogprob

DoneReason = Literal["stop", "length", "load", "unload"]


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer: text, the reasoning trace, and the tool calls completed.

    `logprobs` (when the request asked for them) are those of the tokens generated since
    the last delta, whether their text went to `content`, `thinking` or a tool call, or is
    still held by a parser: a delta may carry logprobs and no text.
    """

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Final:
    """The end of a completion; durations in nanoseconds, as Ollama reports them.

    `prompt_eval_count` is the whole prompt, cached part included (what clients bill and
    budget by); `context` is the prompt's tokens followed by the generated ones.
    """

    done_reason: DoneReason
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    prompt_cached_count: int = 0
    """How much of the prompt the KV cache served (not in Ollama's native output; /v1
    reports it as `prompt_tokens_details.cached_tokens`)."""
    eval_count: int = 0
    eval_duration: int = 0
    load_duration: int = 0
    total_duration: int = 0
    context: list[int] = field(default_factory=list)
    stop_sequence: str | None = None
    """The request's stop string that ended the answer (Anthropic's `stop_sequence`)."""


Event: TypeAlias = Delta | Final
