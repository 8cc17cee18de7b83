"""The runner process: bind, announce, load the model, serve `runner.app` with uvicorn.

Start-up protocol (what `ollamapy.llm` relies on):

1. bind the socket (port 0 = let the OS pick) and print ONE JSON line on stdout:
   `{"event": "listening", "port": N, "pid": P}`;
2. load the model in a worker thread while `GET /health` answers 503 `{"status": "loading"}`;
3. once loaded, `GET /health` answers 200 `{"status": "ok"}`;
4. if loading fails, print `error: <reason>` on stderr and exit with status 1.

The routes live in `runner.app`, the engine-to-stream plumbing in `runner.channel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import uvicorn

from ollamapy.runner.app import RunnerState, build_app
from ollamapy.runner.channel import Outbox
from ollamapy.runner.engine import Engine, min_copied_prefix
from ollamapy.runner.launch import LaunchArgs, ListeningLine
from ollamapy.runner.loader import LoadedModel, load
from ollamapy.runner.native import build_identity, init_backend
from ollamapy.runner.prompt_cache import DiskStore, PromptCache, model_identity, model_key
from ollamapy.runner.speculate import CPU_DRAFT_COST, GPU_DRAFT_COST, DecodeCost
from ollamapy.runner.tokens import PromptTokenizer

log = logging.getLogger(__name__)

EXIT_LOAD_FAILED = 1


def _bind(host: str, port: int) -> socket.socket:
    # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it every small response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _announce(port: int) -> None:
    line = json.dumps(ListeningLine(port=port, pid=os.getpid()).to_json())
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _watch_parent(parent_pid: int) -> None:
    """Exit (via SIGTERM to ourselves) when the parent dies, so no runner is orphaned."""

    def loop() -> None:
        while True:
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            threading.Event().wait(1.0)

    threading.Thread(target=loop, name="ollamapy-parent-watch", daemon=True).start()


async def _load_into(state: RunnerState, server: uvicorn.Server) -> None:
    def progress(value: float) -> None:
        state.progress = value

    try:
        loaded = await asyncio.to_thread(load, state.args, progress)
    except Exception as exc:  # any failure to load ends the process with the reason
        _fail_load(state, server, str(exc) or type(exc).__name__)
        return
    try:
        outbox = Outbox(asyncio.get_running_loop())
        cache = await asyncio.to_thread(prompt_cache_for, state.args, loaded)
        engine = Engine(
            loaded.model,
            loaded.context,
            n_batch=state.args.num_batch,
            on_flush=outbox.flush,
            draft_cost=DecodeCost(GPU_DRAFT_COST if loaded.n_gpu_layers > 0 else CPU_DRAFT_COST),
            prompt_cache=cache,
        )
        engine.start()
    except Exception as exc:
        loaded.close()
        _fail_load(state, server, f"failed to start the engine: {exc}")
        return
    state.loaded, state.info, state.engine, state.outbox = loaded, loaded.info(), engine, outbox
    state.prompts = PromptTokenizer(loaded.model)
    log.info("model loaded: %s", state.info.description)


def prompt_cache_for(args: LaunchArgs, loaded: LoadedModel) -> PromptCache | None:
    """The engine's prompt cache as the command line asks (none for embedding runners),
    with the files an earlier runner of the same model saved listed for lazy reading."""
    if args.prompt_cache <= 0 or args.embedding:
        return None
    store = None
    if args.prompt_cache_dir:
        identity = model_identity(
            args.model, args.lora, kv_cache_type=args.kv_cache_type, flash=args.flash_attention
        )
        directory = Path(args.prompt_cache_dir) / model_key(identity)
        store = DiskStore(directory, identity, build_identity(), args.prompt_cache)
    min_tokens = min_copied_prefix(loaded.context.n_ctx_seq)
    return PromptCache(loaded.context, args.prompt_cache, store=store, min_tokens=min_tokens)


def _save_prompt_cache(engine: Engine) -> None:
    """Save the prompt cache at unload; a failure must not keep the runner from exiting."""
    try:
        written = engine.save_prompt_cache()
        if written:
            log.info("prompt cache: saved %d prefixes", written)
    except Exception:
        log.exception("could not save the prompt cache")


def _fail_load(state: RunnerState, server: uvicorn.Server, reason: str) -> None:
    state.error = reason
    sys.stderr.write(f"error: {reason}\n")
    sys.stderr.flush()
    server.should_exit = True


async def serve(args: LaunchArgs) -> int:
    """Run the runner until SIGTERM/SIGINT; return the process exit status."""
    init_backend(verbose=args.verbose)
    if args.parent_pid is not None:
        _watch_parent(args.parent_pid)
    sock = _bind(args.host, args.port)
    state = RunnerState(args=args)
    config = uvicorn.Config(
        build_app(state),
        log_level="debug" if args.verbose else "warning",
        access_log=args.verbose,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    _announce(sock.getsockname()[1])
    loader = asyncio.create_task(_load_into(state, server))
    # uvicorn re-raises SIGTERM after its graceful shutdown; with a no-op handler in
    # place that re-raise returns here, so the engine, context and model are freed.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    try:
        await server.serve(sockets=[sock])
    finally:
        loader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loader
        stopped = state.engine is None or await asyncio.to_thread(state.engine.close)
        if state.engine is not None and stopped:
            await asyncio.to_thread(_save_prompt_cache, state.engine)
        await asyncio.to_thread(state.embed_thread.shutdown)  # lets a running embed finish
        if state.loaded is not None and stopped:
            state.loaded.close()
        sock.close()
    return EXIT_LOAD_FAILED if state.error else 0


def main(argv: list[str] | None = None) -> int:
    return run(LaunchArgs.from_argv(sys.argv[1:] if argv is None else argv))


def run(args: LaunchArgs) -> int:
    """Serve `args` until told to stop; the process exit status."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(serve(args))
