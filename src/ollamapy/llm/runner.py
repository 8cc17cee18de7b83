"""The server's handle on one runner process (`python -m ollamapy.runner`).

`start_runner(spec)` spawns the child, reads the one JSON line it prints once its socket
is bound, then polls `GET /health` until the model is loaded. The child's stderr is
forwarded to logging and its last lines are kept, so a child that dies while loading
becomes a `RunnerError` carrying llama.cpp's reason. After start-up the handle talks
HTTP to the child (the lean `http11` client, for every exchange) and watches the
process: `exited`/`wait()` and the `on_exit` callback tell the scheduler when it died; a
request in flight then raises `RunnerError`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import orjson

from ollamapy.errors import BadRequestError, RunnerError
from ollamapy.llm.http11 import Connections, HTTPError
from ollamapy.runner import launch
from ollamapy.runner import protocol as p
from ollamapy.types.options import RunnerOptions

log = logging.getLogger(__name__)

STDERR_TAIL = 40
HEALTH_POLL_S = 0.05
CLOSE_GRACE_S = 10.0


@runtime_checkable
class Runner(Protocol):
    """What the scheduler and the API server need from a loaded model."""

    @property
    def pid(self) -> int | None: ...

    @property
    def alive(self) -> bool: ...

    @property
    def info(self) -> p.RunnerInfo: ...

    def completion(
        self, request: p.CompletionRequest
    ) -> AsyncGenerator[p.CompletionChunk | p.CompletionDone, None]:
        """The completion's chunks, then its done event; closing the generator early
        cancels the generation in the runner."""
        ...

    async def embed(
        self, contents: Sequence[str], truncate: bool = True
    ) -> tuple[npt.NDArray[np.float32], int]: ...

    async def tokenize(self, content: str, *, add_special: bool = True) -> list[int]: ...

    async def tokenize_prompt(self, content: str) -> p.TokenizeResponse:
        """A completion prompt's tokens (BOS added as the model asks), with where its
        special tokens end when the runner knows (for cutting a conversation to fit)."""
        ...

    async def detokenize(self, tokens: Sequence[int]) -> str: ...

    async def set_threads(self, n_threads: int) -> None:
        """Decode with `n_threads` threads from the next decode on (the scheduler shares
        the cores between busy runners this way)."""
        ...

    async def wait(self) -> int: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RunnerSpec:
    """Everything that decides how a runner process is started (a change = a reload)."""

    model_path: str | Path
    adapters: tuple[str | Path, ...] = ()
    projector: str | Path | None = None
    options: RunnerOptions = field(default_factory=RunnerOptions)
    num_parallel: int = 1
    embedding: bool = False
    flash_attention: bool | None = None
    kv_cache_type: str | None = None
    draft_max: int = launch.DEFAULT_DRAFT_MAX
    verbose: bool = False
    prompt_cache: int = 0
    prompt_cache_dir: str | None = None

    def launch_args(self, *, parent_pid: int | None = None) -> launch.LaunchArgs:
        o = self.options
        return launch.LaunchArgs(
            model=str(self.model_path),
            port=0,
            num_ctx=o.num_ctx,
            num_batch=o.num_batch,
            num_gpu=o.num_gpu,
            main_gpu=o.main_gpu,
            num_thread=o.num_thread,
            parallel=self.num_parallel,
            use_mmap=o.use_mmap,
            flash_attention=self.flash_attention,
            kv_cache_type=self.kv_cache_type,
            draft_max=self.draft_max,
            embedding=self.embedding,
            lora=tuple(str(a) for a in self.adapters),
            mmproj=None if self.projector is None else str(self.projector),
            parent_pid=parent_pid,
            verbose=self.verbose,
            prompt_cache=0 if self.embedding else self.prompt_cache,
            prompt_cache_dir=self.prompt_cache_dir,
        )


OnExit = Callable[["ProcessRunner"], None]


def _has_exited(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it (asyncio's child watcher does
    that, and only then tells the loop): a zombie, or already reaped, counts as exited."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


async def start_runner(
    spec: RunnerSpec,
    *,
    on_exit: OnExit | None = None,
    load_timeout: float = 300.0,
    env: Mapping[str, str] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> ProcessRunner:
    """Start a runner for `spec` and wait until its model is loaded.

    Raises `RunnerError` with the runner's own reason if it exits, reports an error or
    does not become healthy within `load_timeout` seconds; no process is left behind.
    `on_progress` hears the runner's load progress (0 to 1) each time its health is polled.
    """
    argv = spec.launch_args(parent_pid=os.getpid()).to_argv()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ollamapy.runner",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    runner = ProcessRunner(proc, spec, on_exit=on_exit)
    try:
        await asyncio.wait_for(runner._wait_loaded(on_progress), load_timeout)
    except TimeoutError:
        await runner.close()
        message = f"timed out waiting for llama runner to start ({load_timeout:g}s)"
        raise RunnerError(message) from None
    except BaseException:
        await runner.close()
        raise
    return runner


class ProcessRunner:
    """A live runner child process and an HTTP client for it."""

    def __init__(
        self, proc: asyncio.subprocess.Process, spec: RunnerSpec, *, on_exit: OnExit | None
    ) -> None:
        self._proc = proc
        self.spec = spec
        self._on_exit = on_exit
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._port: int | None = None
        self._connections: Connections | None = None
        self._info: p.RunnerInfo | None = None
        self._closing = False
        self._exited = asyncio.Event()
        self._stderr_task = asyncio.create_task(self._read_stderr())
        self._watch_task = asyncio.create_task(self._watch())
        self._stdout_task: asyncio.Task[None] | None = None
        self.started_at = time.monotonic()

    # state -----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def alive(self) -> bool:
        """False as soon as the process has exited, even before the event loop has heard
        of it: a request that arrives in between must get a fresh runner, not this one."""
        if self._proc.returncode is not None or self._exited.is_set():
            return False
        return not _has_exited(self._proc.pid)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def info(self) -> p.RunnerInfo:
        if self._info is None:
            raise RunnerError("runner is not loaded")
        return self._info

    @property
    def exited(self) -> asyncio.Event:
        """Set once the process has exited (for any reason, `close()` included)."""
        return self._exited

    async def wait(self) -> int:
        """Wait for the process to exit; return its exit status (negative = signal)."""
        await self._exited.wait()
        return self._proc.returncode if self._proc.returncode is not None else -1

    def stderr_tail(self) -> list[str]:
        return list(self._stderr_tail)

    # requests --------------------------------------------------------------

    async def completion(
        self, request: p.CompletionRequest
    ) -> AsyncGenerator[p.CompletionChunk | p.CompletionDone, None]:
        """Stream a completion. Closing/cancelling the iterator cancels it in the runner.

        Raises `BadRequestError` for a request the runner rejects (e.g. a bad schema) and
        `RunnerError` if generation fails or the process dies mid-stream.
        """
        connections = self._require_connections()
        body = orjson.dumps(request.to_json())
        done: p.CompletionDone | None = None
        try:
            async with connections.stream(p.COMPLETION_PATH, body) as resp:
                if resp.status != 200:
                    raise _status_error(resp.status, await resp.read())
                lines = resp.lines()
                async for line in lines:
                    if not line:
                        continue
                    event = p.parse_completion_line(orjson.loads(line))
                    if isinstance(event, p.CompletionError):
                        raise RunnerError(event.error)
                    if isinstance(event, p.CompletionDone):
                        # The body ends right after the done line: read that end and leave
                        # the block, so the connection is kept for the next request before
                        # the event is handed on (a caller that stops iterating there would
                        # otherwise leave the connection held by a suspended generator).
                        async for _ in lines:
                            pass
                        done = event
                        break
                    yield event
        except (HTTPError, orjson.JSONDecodeError, p.ProtocolError) as exc:
            raise RunnerError(await self._failure(str(exc) or type(exc).__name__)) from exc
        if done is None:
            raise RunnerError(await self._failure("the runner ended the stream early"))
        yield done

    async def tokenize(self, content: str, *, add_special: bool = True) -> list[int]:
        body = await self._post(p.TOKENIZE_PATH, p.TokenizeRequest(content, add_special).to_json())
        return p.TokenizeResponse.from_json(body).tokens

    async def tokenize_prompt(self, content: str) -> p.TokenizeResponse:
        body = await self._post(p.TOKENIZE_PATH, p.TokenizeRequest(content, True).to_json())
        return p.TokenizeResponse.from_json(body)

    async def detokenize(self, tokens: Sequence[int]) -> str:
        body = await self._post(p.DETOKENIZE_PATH, p.DetokenizeRequest(list(tokens)).to_json())
        return p.DetokenizeResponse.from_json(body).content

    async def set_threads(self, n_threads: int) -> None:
        await self.threads(n_threads)

    async def threads(self, n_threads: int | None = None) -> p.ThreadsReply:
        """Ask the runner to decode with `n_threads` (None: only ask); its reply says the
        count asked for and the one its last decode ran with."""
        if n_threads is None:
            try:
                reply = await self._require_connections().get(p.THREADS_PATH)
            except HTTPError as exc:
                raise RunnerError(await self._failure(str(exc))) from exc
            if reply.status != 200:
                raise _status_error(reply.status, reply.body)
            return p.ThreadsReply.from_json(orjson.loads(reply.body))
        body = await self._post(p.THREADS_PATH, p.ThreadsRequest(n_threads).to_json())
        return p.ThreadsReply.from_json(body)

    async def embed(
        self, contents: Sequence[str], truncate: bool = True
    ) -> tuple[npt.NDArray[np.float32], int]:
        """Raw (unnormalised) embeddings of `contents` and the number of tokens evaluated.

        The vectors are the rows of a float32 matrix (`len(contents)` x the model's width),
        read straight from the runner's packed reply.
        """
        request = p.EmbeddingRequest(list(contents), truncate)
        body = p.EmbeddingResponse.from_json(await self._post(p.EMBEDDING_PATH, request.to_json()))
        if body.rows != len(contents):
            raise RunnerError(f"runner returned {body.rows} embeddings for {len(contents)} inputs")
        return body.matrix(), body.prompt_eval_count

    async def fetch_info(self) -> p.RunnerInfo:
        try:
            reply = await self._require_connections().get(p.INFO_PATH)
        except HTTPError as exc:
            raise RunnerError(await self._failure(str(exc))) from exc
        if reply.status != 200:
            raise _status_error(reply.status, reply.body)
        try:
            return p.RunnerInfo.from_json(orjson.loads(reply.body))
        except orjson.JSONDecodeError as exc:
            raise RunnerError(f"the runner sent invalid JSON: {exc}") from exc

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST a small JSON request on the lean client (`http11`); the reply's JSON."""
        connections = self._require_connections()
        try:
            reply = await connections.post(path, orjson.dumps(payload))
        except HTTPError as exc:
            raise RunnerError(await self._failure(str(exc))) from exc
        if reply.status != 200:
            raise _status_error(reply.status, reply.body)
        try:
            return orjson.loads(reply.body)
        except orjson.JSONDecodeError as exc:
            raise RunnerError(f"the runner sent invalid JSON: {exc}") from exc

    def _require_connections(self) -> Connections:
        if self._connections is None or self._closing:
            raise RunnerError("runner is closed")
        if not self.alive:
            raise RunnerError(self._exit_message())
        return self._connections

    # lifecycle -------------------------------------------------------------

    async def close(self, timeout: float = CLOSE_GRACE_S) -> None:
        """Stop the process: SIGTERM, then SIGKILL after `timeout`; always reaps it."""
        self._closing = True
        if self._connections is not None:
            await self._connections.aclose()
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), timeout)
            except TimeoutError:
                log.warning("runner %s did not stop in %gs; killing it", self.pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await self._proc.wait()
        await self._exited.wait()

    async def _wait_loaded(self, on_progress: Callable[[float], None] | None = None) -> None:
        assert self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise RunnerError(await self._failure("the runner exited before listening"))
        try:
            self._port = launch.ListeningLine.from_json(json.loads(line)).port
        except (ValueError, p.ProtocolError) as exc:
            raise RunnerError(f"unexpected output from the runner: {line[:200]!r}") from exc
        self._stdout_task = asyncio.create_task(self._drain_stdout())
        self._connections = Connections("127.0.0.1", self._port)
        await self._poll_health(on_progress)
        self._info = await self.fetch_info()
        log.info("runner %s ready on port %s: %s", self.pid, self._port, self._info.description)

    async def _poll_health(self, on_progress: Callable[[float], None] | None) -> None:
        assert self._connections is not None
        while True:
            if not self.alive:
                raise RunnerError(await self._failure("the runner exited while loading"))
            with contextlib.suppress(HTTPError, TimeoutError, ValueError, p.ProtocolError):
                reply = await asyncio.wait_for(self._connections.get(p.HEALTH_PATH), 2.0)
                health = p.Health.from_json(orjson.loads(reply.body))
                if on_progress is not None:
                    on_progress(1.0 if health.status == "ok" else health.progress)
                if health.status == "ok" and reply.status == 200:
                    return
            await asyncio.sleep(HEALTH_POLL_S)

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        async for raw in self._proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                log.debug("runner %s: %s", self._proc.pid, line)

    async def _drain_stdout(self) -> None:
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            log.debug("runner %s stdout: %s", self._proc.pid, raw.decode(errors="replace").rstrip())

    async def _watch(self) -> None:
        await self._proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stderr_task, 2.0)  # collect the last words
        self._exited.set()
        if not self._closing:
            log.warning("runner %s exited unexpectedly: %s", self.pid, self._exit_message())
        if self._on_exit is not None:
            try:
                self._on_exit(self)
            except Exception:
                log.exception("runner on_exit callback failed")

    async def _failure(self, fallback: str) -> str:
        """Explain a failed request: the exit reason if the process died, else `fallback`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), 1.0)
        return self._exit_message() if self._exited.is_set() else fallback

    def _exit_message(self) -> str:
        code = self._proc.returncode
        prefix = "error: "
        reason = next(
            (
                line[len(prefix) :]
                for line in reversed(self._stderr_tail)
                if line.startswith(prefix)
            ),
            None,
        )
        if reason is None and code is not None and code < 0:
            reason = f"killed by signal {_signal_name(-code)}"
        if reason is None:
            reason = self._stderr_tail[-1] if self._stderr_tail else f"exit status {code}"
        return f"llama runner process has terminated: {reason}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _status_error(status: int, body: bytes) -> Exception:
    """Map a runner's non-200 reply onto the project's errors."""
    try:
        message = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", errors="replace")[:500] or f"HTTP {status}"
    if 400 <= status < 500:
        return BadRequestError(message)
    return RunnerError(message)
