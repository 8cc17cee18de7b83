"""The server's handle on runner processes: start one per loaded model, talk HTTP to it."""

from ollamapy.llm.runner import ProcessRunner, Runner, RunnerSpec, start_runner

__all__ = ["ProcessRunner", "Runner", "RunnerSpec", "start_runner"]
