"""`ollama run`: the session state and one turn of generation, shared by one-shot and REPL use.

A one-shot run (a PROMPT argument or piped stdin) goes through `/api/generate`, as Ollama's
client does; the REPL keeps the conversation and sends it whole to `/api/chat` every turn.
Ctrl+C while an answer streams stops that answer (the stream is closed) and nothing else.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console

from ollamapy.api.client import JSON, Client, ResponseError
from ollamapy.api.types import ChatRequest, EmbedRequest, GenerateRequest, Message, PullRequest
from ollamapy.cli.display import ResponseWriter, stats_summary
from ollamapy.cli.progress import ProgressDisplay, spinner
from ollamapy.errors import OllamaError

THINK_VALUES: dict[str, bool | str] = {
    "": True,
    "true": True,
    "false": False,
    "high": "high",
    "medium": "medium",
    "low": "low",
    "max": "max",
}


def parse_think(value: str | None) -> bool | str | None:
    """`--think` (no value means true), `--think=false`, or a level; None when not given."""
    if value is None:
        return None
    if value not in THINK_VALUES:
        raise OllamaError(
            f'invalid value for --think: "{value}" (must be true, false, high, medium, low, or max)'
        )
    return THINK_VALUES[value]


@dataclass
class Terminal:
    """The streams and terminal facts a command needs; injectable so tests need no TTY."""

    out: TextIO
    err: TextIO
    stdin: TextIO
    stdin_tty: bool
    stdout_tty: bool
    width: Callable[[], int]

    @classmethod
    def from_sys(cls) -> Terminal:
        """The real streams, looked up now (so click's test runner's swapped ones are used)."""
        return cls(
            out=sys.stdout,
            err=sys.stderr,
            stdin=sys.stdin,
            stdin_tty=_isatty(sys.stdin),
            stdout_tty=_isatty(sys.stdout),
            width=lambda: shutil.get_terminal_size((80, 24)).columns,
        )

    def console(self) -> Console:
        """A rich console on stderr, where Ollama draws spinners and progress."""
        # Off a terminal nothing is redrawn, so long status lines are not cut to a width.
        width = None if _isatty(self.err) else 1000
        return Console(file=self.err, highlight=False, soft_wrap=False, width=width)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class RunOptions:
    """One `ollama run` session: the model, the conversation and the `/set` switches."""

    model: str
    parent_model: str = ""
    prompt: str = ""
    messages: list[JSON] = field(default_factory=list)
    system: str = ""
    template: str = ""
    options: JSON = field(default_factory=dict)
    format: str = ""
    keep_alive: str | None = None
    think: bool | str | None = None
    think_explicit: bool = False
    hide_thinking: bool = False
    word_wrap: bool = True
    verbose: bool = False
    multimodal: bool = False
    images: list[str] = field(default_factory=list)
    """The one-shot prompt's images (base64), found in it by `cli.images`."""

    def copy(self) -> RunOptions:
        return copy.deepcopy(self)

    def format_field(self) -> str | None:
        return self.format or None


class Session:
    """Talks to the server for one run: load, generate, chat; prints what Ollama prints."""

    def __init__(self, client: Client, term: Terminal) -> None:
        self.client = client
        self.term = term
        self.console = term.console()

    def writer(self, opts: RunOptions) -> ResponseWriter:
        wrap = opts.word_wrap and self.term.stdout_tty
        return ResponseWriter(self.term.out, wrap, self.term.width, plain=not self.term.stdout_tty)

    def load(self, opts: RunOptions) -> None:
        """Send `/api/generate` with only the model (and keep_alive) so it loads, with a spinner."""
        request = GenerateRequest(model=opts.model, keep_alive=opts.keep_alive, think=opts.think)
        with spinner(self.console), self.client.generate(request, stream=True) as parts:
            for _ in parts:
                pass

    def generate(self, opts: RunOptions) -> None:
        """Answer `opts.prompt` once through `/api/generate`."""
        stream = self.client.generate(generate_request(opts), stream=True)
        writer = self.writer(opts)
        latest = self._stream(stream, writer, opts, lambda p: (p.get("response", ""), p))
        if opts.prompt:
            self.term.out.write("\n\n")
        self._finish(latest, opts)

    def chat(self, opts: RunOptions) -> JSON | None:
        """One REPL turn: send the conversation, stream the answer, return the reply message."""
        stream = self.client.chat(chat_request(opts), stream=True)
        writer = self.writer(opts)
        content: list[str] = []

        def pick(part: JSON) -> tuple[str, JSON]:
            message = part.get("message") or {}
            text = str(message.get("content", ""))
            content.append(text)
            return text, {**part, "thinking": message.get("thinking", "")}

        latest = self._stream(stream, writer, opts, pick)
        if latest is None:
            return None
        if opts.messages:
            self.term.out.write("\n\n")
        self._finish(latest, opts)
        role = str((latest.get("message") or {}).get("role") or "assistant")
        return {"role": role, "content": "".join(content)}

    def _stream(
        self,
        stream: Any,
        writer: ResponseWriter,
        opts: RunOptions,
        pick: Callable[[JSON], tuple[str, JSON]],
    ) -> JSON | None:
        """Print a stream of parts; None when Ctrl+C stopped it."""
        latest: JSON | None = None
        display: ProgressDisplay = spinner(self.console)
        try:
            with display, stream:
                for part in stream:
                    text, latest = pick(part)
                    thinking = str(latest.get("thinking") or "")
                    if text or (thinking and not opts.hide_thinking):
                        display.stop()
                    if thinking and not opts.hide_thinking:
                        writer.write_thinking(thinking)
                    if text:
                        writer.end_thinking()
                        writer.write(text)
        except KeyboardInterrupt:
            if writer.wrote:
                self.term.out.write("\n")
            self.term.out.flush()
            return None
        return latest

    def _finish(self, latest: JSON | None, opts: RunOptions) -> None:
        self.term.out.flush()
        if latest is not None and latest.get("done") and opts.verbose:
            self.term.err.write(stats_summary(latest))
            self.term.err.flush()

    def embed(self, opts: RunOptions) -> None:
        """Embedding models: print the vector as a JSON array."""
        request = EmbedRequest(model=opts.model, input=opts.prompt, keep_alive=opts.keep_alive)
        result = self.client.embed(request)
        for vector in result.get("embeddings") or []:
            self.term.out.write(json.dumps(vector, separators=(",", ":")) + "\n")


def generate_request(opts: RunOptions) -> GenerateRequest:
    """A one-shot answer's request; an unset switch (None) is left out of the body."""
    return GenerateRequest(
        model=opts.model,
        prompt=opts.prompt,
        images=opts.images or None,
        system=opts.system or None,
        format=opts.format_field(),
        options=dict(opts.options) or None,
        keep_alive=opts.keep_alive,
        think=opts.think,
    )


def chat_request(opts: RunOptions) -> ChatRequest:
    """A REPL turn's request: the conversation so far and the same switches as generate."""
    return ChatRequest(
        model=opts.model,
        messages=wire_messages(opts.messages),
        format=opts.format_field(),
        options=dict(opts.options) or None,
        keep_alive=opts.keep_alive,
        think=opts.think,
    )


def wire_messages(messages: list[JSON]) -> list[Message]:
    """The session keeps its conversation as JSON dicts; the request takes them as `Message`s."""
    return [Message.model_validate(message) for message in messages]


def pull_progress(client: Client, console: Console, model: str, insecure: bool = False) -> None:
    """`ollama pull`'s display: a bar per layer digest, a spinner per status."""
    status = ""
    with (
        ProgressDisplay(console) as display,
        client.pull(PullRequest(model=model, insecure=insecure), stream=True) as parts,
    ):
        for part in parts:
            digest = str(part.get("digest") or "")
            if digest:
                if not part.get("completed"):
                    continue
                display.stop_spinners()
                short = digest.removeprefix("sha256:").strip()[:12]
                display.bar(
                    digest, f"pulling {short}:", int(part.get("total") or 0), int(part["completed"])
                )
            elif part.get("status") and part["status"] != status:
                display.stop_spinners()
                status = str(part["status"])
                display.spinner(status)


def show_or_pull(client: Client, console: Console, model: str, insecure: bool = False) -> JSON:
    """`/api/show`; on 404 pull the model first, as `ollama run` does."""
    try:
        return client.show(model)
    except ResponseError as exc:
        if exc.status_code != 404:
            raise
    pull_progress(client, console, model, insecure)
    return client.show(model)
