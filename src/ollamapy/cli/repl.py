"""The `ollama run` REPL: `>>> ` prompt, `\"\"\"` multi-line input and the slash commands.

The commands are tables (`SLASH_COMMANDS`, `SET_COMMANDS`, `SHOW_COMMANDS`, `HELP_TOPICS`) of
small handlers; texts and messages are Ollama's. Input comes through a `LineReader`, so the
loop runs the same against prompt_toolkit on a terminal and against a list of lines in tests.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, Protocol

from ollamapy.api.client import JSON, ClientError, ResponseError
from ollamapy.api.types import CreateRequest, ShowRequest
from ollamapy.cli.format import render_table
from ollamapy.cli.images import IMAGE_PATH, ImageFileError, extract_images
from ollamapy.cli.run import RunOptions, Session, wire_messages
from ollamapy.cli.show import render_show
from ollamapy.cli.tables import list_rows
from ollamapy.types.options import parse_option_text

PROMPT = ">>> "
ALT_PROMPT = "... "
PLACEHOLDER = "Send a message (/? for help)"
ALT_PLACEHOLDER = 'Use """ to end multi-line input'
TRIPLE = '"""'

USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""
USAGE_MULTIMODAL = "Use /path/to/file to include .jpg, .png, or .webp images.\n"

USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking

"""

USAGE_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit ollama (/bye)

"""

USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template

"""

USAGE_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters

"""


class Interrupted(Exception):
    """Ctrl+C at the prompt; `text` is what was typed on the line."""

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self.text = text


class LineReader(Protocol):
    """Where the REPL's lines come from. `read` raises EOFError (Ctrl+D) or Interrupted."""

    def read(self, alt: bool) -> str: ...

    def set_history(self, enabled: bool) -> None: ...


class Multiline(Enum):
    NONE = auto()
    PROMPT = auto()
    SYSTEM = auto()
    TEMPLATE = auto()


class Outcome(Enum):
    CONTINUE = auto()
    EXIT = auto()


Handler = Callable[["Repl", list[str]], Outcome]


@dataclass
class Repl:
    """The interactive loop's state: the session options and the half-typed input."""

    session: Session
    opts: RunOptions
    reader: LineReader
    buffer: str = ""
    multiline: Multiline = Multiline.NONE

    def say(self, text: str) -> None:
        """A message on stdout (`fmt.Println` in Ollama)."""
        self.session.term.out.write(f"{text}\n")
        self.session.term.out.flush()

    def usage(self, text: str) -> None:
        """Help texts go to stderr, as Ollama's do."""
        self.session.term.err.write(text)
        self.session.term.err.flush()

    def run(self) -> None:
        while True:
            try:
                line = self.reader.read(self.multiline is not Multiline.NONE)
            except EOFError:
                self.say("")
                return
            except Interrupted as interrupt:
                if not interrupt.text:
                    self.say("\nUse Ctrl + d or /bye to exit.")
                self.buffer, self.multiline = "", Multiline.NONE
                continue
            if self.handle(line) is Outcome.EXIT:
                return

    def handle(self, line: str) -> Outcome:
        """Take one input line; send the message when a complete one has been typed."""
        if self.multiline is not Multiline.NONE:
            self._continue_multiline(line)
        elif line.startswith(TRIPLE):
            self._start_multiline(line)
        elif line.startswith("/") and not self._starts_with_image_path(line):
            return dispatch(self, line)
        else:
            self.buffer += line
        if self.buffer and self.multiline is Multiline.NONE:
            self.send()
        return Outcome.CONTINUE

    def _starts_with_image_path(self, line: str) -> bool:
        """For a vision model, `/path/to/photo.png what is this?` is a message, not a
        command (Ollama's rule: the first word begins an image path)."""
        if not self.opts.multimodal:
            return False
        first = line.split()[0]
        return any(path.startswith(first) for path in IMAGE_PATH.findall(line))

    def _start_multiline(self, line: str) -> None:
        body = line.removeprefix(TRIPLE)
        if body.endswith(TRIPLE):
            self.buffer += body.removesuffix(TRIPLE)
            return
        self.buffer += body + "\n"
        self.multiline = Multiline.PROMPT

    def _continue_multiline(self, line: str) -> None:
        if not line.endswith(TRIPLE):
            self.buffer += line + "\n"
            return
        self.buffer += line.removesuffix(TRIPLE)
        kind, self.multiline = self.multiline, Multiline.NONE
        if kind is Multiline.SYSTEM:
            self.set_system(self.buffer)
            self.buffer = ""
        elif kind is Multiline.TEMPLATE:
            self.opts.template = self.buffer
            self.say("Set prompt template.")
            self.buffer = ""

    def set_system(self, text: str) -> None:
        """Set the system message; it replaces a system message that is the last message."""
        self.opts.system = text
        message = {"role": "system", "content": text}
        if self.opts.messages and self.opts.messages[-1].get("role") == "system":
            self.opts.messages[-1] = message
        else:
            self.opts.messages.append(message)
        self.say("Set system message.")

    def send(self) -> None:
        """Send the typed message with the conversation so far; keep the reply. For a vision
        model, image paths in it are attached (and earlier images dropped, as Ollama does,
        so the model answers about the newest)."""
        message: dict[str, Any] = {"role": "user", "content": self.buffer}
        self.buffer = ""
        if self.opts.multimodal:
            try:
                text, images = extract_images(message["content"], self.session.term.err)
            except (ImageFileError, OSError) as exc:
                self.say(f"Couldn't process image: {exc}")
                return
            if images:
                for earlier in self.opts.messages:
                    earlier.pop("images", None)
                message = {**message, "content": text, "images": [b64(i) for i in images]}
        self.opts.messages.append(message)
        try:
            reply = self.session.chat(self.opts)
        except ResponseError as exc:
            if "does not support thinking" in exc.message or "invalid think value" in exc.message:
                self.say(f"error: {exc.message}")
                return
            raise
        if reply is not None:
            self.opts.messages.append(reply)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_command(line: str) -> tuple[str, list[str]]:
    """Split a slash command into its name and arguments: `/set parameter x 1` ->
    (`/set`, [`parameter`, `x`, `1`])."""
    words = line.split()
    return (words[0], words[1:]) if words else ("", [])


def dispatch(repl: Repl, line: str) -> Outcome:
    name, args = parse_command(line)
    handler = SLASH_COMMANDS.get(name)
    if handler is None:
        repl.say(f"Unknown command '{name}'. Type /? for help")
        return Outcome.CONTINUE
    return handler(repl, args)


# -- /set ---------------------------------------------------------------------------------------


def _set(repl: Repl, args: list[str]) -> Outcome:
    if not args:
        repl.usage(USAGE_SET)
        return Outcome.CONTINUE
    handler = SET_COMMANDS.get(args[0])
    if handler is None:
        repl.say(f"Unknown command '/set {args[0]}'. Type /? for help")
        return Outcome.CONTINUE
    handler(repl, args[1:])
    return Outcome.CONTINUE


def _set_parameter(repl: Repl, args: list[str]) -> None:
    if len(args) < 2:
        repl.usage(USAGE_PARAMETERS)
        return
    name, values = args[0], args[1:]
    try:
        parsed = [parse_option_text(name, value) for value in values]
    except ValueError as exc:
        repl.say(f'Couldn\'t set parameter: "{exc}"')
        return
    value: Any = parsed[0]
    if isinstance(value, list):
        value = [item for part in parsed for item in part]
    repl.opts.options[name] = value
    repl.say(f"Set parameter '{name}' to '{', '.join(values)}'")


def _set_text(kind: Multiline) -> Callable[[Repl, list[str]], None]:
    """`/set system ...` / `/set template ...`: one line, or `\"\"\"` to start several."""

    def handler(repl: Repl, args: list[str]) -> None:
        if not args:
            repl.usage(USAGE_SET)
            return
        text = " ".join(args)
        if text.startswith(TRIPLE):
            text = text.removeprefix(TRIPLE)
            if not text.endswith(TRIPLE):
                repl.buffer += text + "\n"
                repl.multiline = kind
                return
            text = text.removesuffix(TRIPLE)
        repl.buffer = ""
        if kind is Multiline.SYSTEM:
            repl.set_system(text)
        else:
            repl.opts.template = text
            repl.say("Set prompt template.")

    return handler


def _set_format(repl: Repl, args: list[str]) -> None:
    if not args or args[0] != "json":
        repl.say("Invalid or missing format. For 'json' mode use '/set format json'")
        return
    repl.opts.format = "json"
    repl.say("Set format to 'json' mode.")


def _switch(attribute: str, value: Any, message: str) -> Callable[[Repl, list[str]], None]:
    """A `/set` word that just flips one session option and says so."""

    def handler(repl: Repl, args: list[str]) -> None:
        setattr(repl.opts, attribute, value)
        if message:
            repl.say(message)

    return handler


def _history(enabled: bool) -> Callable[[Repl, list[str]], None]:
    def handler(repl: Repl, args: list[str]) -> None:
        repl.reader.set_history(enabled)

    return handler


def _set_think(value: bool) -> Callable[[Repl, list[str]], None]:
    """`/set think [level]` and `/set nothink`. As Ollama's, the level is not checked here:
    the server answers a bad one with its 400, which the next turn prints."""

    def handler(repl: Repl, args: list[str]) -> None:
        level = args[0] if args and value else None
        repl.opts.think = level or value
        repl.opts.think_explicit = True
        _warn_without_thinking(repl)
        label = f"Set 'think' mode to '{level}'." if level else None
        repl.say(label or ("Set 'think' mode." if value else "Set 'nothink' mode."))

    return handler


def _warn_without_thinking(repl: Repl) -> None:
    """Ollama's ensureThinkingSupport: a warning on stderr when the model does not list the
    `thinking` capability (nothing when it cannot be asked)."""
    try:
        shown = repl.session.client.show(ShowRequest(model=repl.opts.model))
    except ClientError:
        return
    if "thinking" not in (shown.get("capabilities") or []):
        repl.usage(f'warning: model "{repl.opts.model}" does not support thinking output\n')


SET_COMMANDS: dict[str, Callable[[Repl, list[str]], None]] = {
    "parameter": _set_parameter,
    "system": _set_text(Multiline.SYSTEM),
    "template": _set_text(Multiline.TEMPLATE),
    "history": _history(True),
    "nohistory": _history(False),
    "wordwrap": _switch("word_wrap", True, "Set 'wordwrap' mode."),
    "nowordwrap": _switch("word_wrap", False, "Set 'nowordwrap' mode."),
    "format": _set_format,
    "noformat": _switch("format", "", "Disabled format."),
    "verbose": _switch("verbose", True, "Set 'verbose' mode."),
    "quiet": _switch("verbose", False, "Set 'quiet' mode."),
    "think": _set_think(True),
    "nothink": _set_think(False),
}

# -- /show --------------------------------------------------------------------------------------


def _show(repl: Repl, args: list[str]) -> Outcome:
    if not args:
        repl.usage(USAGE_SHOW)
        return Outcome.CONTINUE
    handler = SHOW_COMMANDS.get(args[0])
    if handler is None:
        repl.say(f"Unknown command '/show {args[0]}'. Type /? for help")
        return Outcome.CONTINUE
    request = ShowRequest(
        model=repl.opts.model,
        system=repl.opts.system or None,
        options=dict(repl.opts.options) or None,
    )
    try:
        resp = repl.session.client.show(request)
    except ResponseError:
        repl.say("error: couldn't get model")
        raise
    handler(repl, resp)
    return Outcome.CONTINUE


def _show_parameters(repl: Repl, resp: JSON) -> None:
    repl.say("Model defined parameters:")
    text = str(resp.get("parameters") or "")
    if not text:
        repl.say("  No additional parameters were specified for this model.")
    for line in text.split("\n") if text else []:
        repl.say(f"  {line}")
    repl.say("")
    if repl.opts.options:
        repl.say("User defined parameters:")
        for key, value in repl.opts.options.items():
            repl.say(f"  {key:<30} {_go_print(value)}")
        repl.say("")


def _go_print(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _show_system(repl: Repl, resp: JSON) -> None:
    text = repl.opts.system or str(resp.get("system") or "")
    repl.say(f"{text}\n" if text else "No system message was specified for this model.")


def _show_or(field_name: str, missing: str) -> Callable[[Repl, JSON], None]:
    def handler(repl: Repl, resp: JSON) -> None:
        repl.say(str(resp.get(field_name) or "") or missing)

    return handler


SHOW_COMMANDS: dict[str, Callable[[Repl, JSON], None]] = {
    "info": lambda repl, resp: repl.usage(render_show(resp)),
    "license": _show_or("license", "No license was specified for this model."),
    "modelfile": lambda repl, resp: repl.say(str(resp.get("modelfile") or "")),
    "parameters": _show_parameters,
    "system": _show_system,
    "template": _show_or("template", "No prompt template was specified for this model."),
}

# -- /load, /save, /clear, /list, /bye, /help ---------------------------------------------------


def _load(repl: Repl, args: list[str]) -> Outcome:
    if len(args) != 1:
        repl.say("Usage:\n  /load <modelname>")
        return Outcome.CONTINUE
    previous = repl.opts.copy()
    repl.opts.model, repl.opts.messages = args[0], []
    repl.say(f"Loading model '{args[0]}'")
    try:
        repl.session.load(repl.opts)
    except ResponseError as exc:
        if "not found" in exc.message:
            repl.say(f"Couldn't find model '{args[0]}'")
            repl.opts = previous
            return Outcome.CONTINUE
        raise
    return Outcome.CONTINUE


def save_request(name: str, opts: RunOptions) -> CreateRequest:
    """The `/api/create` request that turns this session into a new model `name`."""
    return CreateRequest(
        model=name,
        from_=opts.parent_model or opts.model,
        system=opts.system or None,
        template=opts.template or None,
        parameters=dict(opts.options) or None,
        messages=wire_messages(opts.messages) or None,
    )


def _save(repl: Repl, args: list[str]) -> Outcome:
    if len(args) != 1:
        repl.say("Usage:\n  /save <modelname>")
        return Outcome.CONTINUE
    try:
        repl.session.client.create(save_request(args[0], repl.opts))
    except ResponseError as exc:
        if "invalid model name" in exc.message:
            repl.say(f"error: The model name '{args[0]}' is invalid")
            return Outcome.CONTINUE
        raise
    repl.say(f"Created new model '{args[0]}'")
    return Outcome.CONTINUE


def _clear(repl: Repl, args: list[str]) -> Outcome:
    repl.opts.messages = []
    if repl.opts.system:
        repl.opts.messages.append({"role": "system", "content": repl.opts.system})
    repl.say("Cleared session context")
    return Outcome.CONTINUE


def _list(repl: Repl, args: list[str]) -> Outcome:
    models = repl.session.client.list().get("models") or []
    rows = list_rows(models, args[0] if args else "")
    repl.session.term.out.write(render_table(rows, ["NAME", "ID", "SIZE", "MODIFIED"]))
    return Outcome.CONTINUE


def _help(repl: Repl, args: list[str]) -> Outcome:
    if not args:
        repl.usage(USAGE + (USAGE_MULTIMODAL if repl.opts.multimodal else "") + "\n")
    elif topic := HELP_TOPICS.get(args[0]):
        repl.usage(topic)
    return Outcome.CONTINUE


HELP_TOPICS: dict[str, str] = {
    "set": USAGE_SET,
    "/set": USAGE_SET,
    "show": USAGE_SHOW,
    "/show": USAGE_SHOW,
    "shortcut": USAGE_SHORTCUTS,
    "shortcuts": USAGE_SHORTCUTS,
}

SLASH_COMMANDS: dict[str, Handler] = {
    "/set": _set,
    "/show": _show,
    "/load": _load,
    "/save": _save,
    "/clear": _clear,
    "/list": _list,
    "/bye": lambda repl, args: Outcome.EXIT,
    "/exit": lambda repl, args: Outcome.EXIT,
    "/?": _help,
    "/help": _help,
}
