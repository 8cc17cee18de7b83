"""The server's only door to runner processes: start one per loaded model, talk HTTP to it.

The wire types of a runner (`ollamapy.runner.protocol`) are re-exported here, so that the
server never imports the runner package itself.
"""

from ollamapy.llm.runner import ProcessRunner, Runner, RunnerSpec, start_runner
from ollamapy.runner.launch import quantize_type_named
from ollamapy.runner.protocol import (
    CompletionChunk,
    CompletionDone,
    CompletionRequest,
    RunnerInfo,
    TokenizeResponse,
    ToolCallGrammar,
    TraceBudget,
)

__all__ = [
    "CompletionChunk",
    "CompletionDone",
    "CompletionRequest",
    "ProcessRunner",
    "Runner",
    "RunnerInfo",
    "RunnerSpec",
    "TokenizeResponse",
    "ToolCallGrammar",
    "TraceBudget",
    "quantize_type_named",
    "start_runner",
]
