"""`python -m tests.deploy.scripted_replica`: a replica for the load-balancer tests.

The real server (store, scheduler, routes) on `OLLAMA_HOST` with `OLLAMA_MODELS`, whose
runners are scripted: each answer names the replica that produced it (so a test sees the
routing) and streams slowly (so a replica can be killed mid-stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import uvicorn

from ollamapy.config import Config
from ollamapy.llm import CompletionChunk, CompletionDone, CompletionRequest
from ollamapy.scheduler import ModelLoad, Scheduler
from ollamapy.server.app import create_app
from tests.fakes import Script, ScriptedRunner

CHUNKS = 20
CHUNK_DELAY_S = 0.01


class SlowRunner(ScriptedRunner):
    """A scripted runner that waits between chunks, like a model decoding."""

    async def completion(
        self, request: CompletionRequest
    ) -> AsyncGenerator[CompletionChunk | CompletionDone, None]:
        async for item in super().completion(request):
            if isinstance(item, CompletionChunk):
                await asyncio.sleep(CHUNK_DELAY_S)
            yield item


def main() -> None:
    config = Config.from_env()
    name = f"replica-{config.host.port}"
    script = Script(chunks=[name, *(" token" for _ in range(CHUNKS - 1))])

    async def factory(load: ModelLoad) -> SlowRunner:
        return SlowRunner(script, load)

    app = create_app(config, Scheduler(factory, default_keep_alive=300))
    uvicorn.run(app, host=config.host.host, port=config.host.port, log_level="warning")


if __name__ == "__main__":
    main()
