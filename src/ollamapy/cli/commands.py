"""The click plumbing that makes the `ollama` command look and fail like Ollama's (cobra) CLI.

* `OllamaCommand` takes its positional arguments as one list and checks their count with
  cobra's messages (`accepts 1 arg(s), received 0`), and prints cobra-style help.
* `OllamaGroup` resolves aliases (`ls`, `start`), reports unknown commands as cobra does and
  turns every client error into `Error: <message>` with exit status 1, never a traceback.
* `Deps` carries what commands need from outside (client, terminal, line reader, clock);
  tests pass their own through click's `obj`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
import httpx

from ollamapy.api.client import CONNECT_ERROR_MESSAGE, Client, ClientConnectionError
from ollamapy.cli.repl import LineReader
from ollamapy.cli.run import Terminal
from ollamapy.config import DESCRIPTIONS
from ollamapy.errors import OllamaError


def _local_now() -> datetime:
    return datetime.now().astimezone()


def _prompt_reader(history: bool) -> LineReader:
    """The terminal's line reader, imported on first use (see `cli.prompt_reader`)."""
    from ollamapy.cli.prompt_reader import PromptReader

    return PromptReader(history)


@dataclass
class Deps:
    """Everything a command gets from outside the process's code."""

    make_client: Callable[[], Client] = Client
    make_terminal: Callable[[], Terminal] = Terminal.from_sys
    make_reader: Callable[[bool], LineReader] = _prompt_reader
    now: Callable[[], datetime] = _local_now
    terminal: Terminal | None = field(default=None, repr=False)

    def term(self) -> Terminal:
        if self.terminal is None:
            self.terminal = self.make_terminal()
        return self.terminal


def deps(ctx: click.Context) -> Deps:
    return ctx.ensure_object(Deps)


def connect(ctx: click.Context) -> Client:
    """A client for this command, after checking the server answers (Ollama's heartbeat)."""
    client = deps(ctx).make_client()
    ctx.call_on_close(client.close)
    client.heartbeat()
    return client


# -- argument counts, with cobra's messages -----------------------------------------------------


def _count_error(received: int, low: int, high: int | None) -> str | None:
    if high == low and received != low:
        return f"accepts {low} arg(s), received {received}"
    if high is None and received < low:
        return f"requires at least {low} arg(s), only received {received}"
    if high is not None and not low <= received <= high:
        return f"accepts between {low} and {high} arg(s), received {received}"
    return None


class OllamaCommand(click.Command):
    """A command with cobra's argument checks and help layout."""

    def __init__(
        self,
        *args: Any,
        use: str = "",
        min_args: int = 0,
        max_args: int | None = None,
        aliases: Sequence[str] = (),
        env_vars: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.use = use or (self.name or "")
        self.min_args, self.max_args = min_args, max_args
        self.aliases = tuple(aliases)
        self.env_vars = tuple(env_vars)
        self.params.append(click.Argument(["args"], nargs=-1))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        message = _count_error(len(ctx.params["args"]), self.min_args, self.max_args)
        if message is not None:
            raise click.ClickException(message)
        return rest

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write(cobra_help(self, ctx))


def cobra_help(command: click.Command, ctx: click.Context) -> str:
    """`ollama CMD --help`, laid out like cobra's usage template."""
    use = getattr(command, "use", command.name or "")
    sections = [f"{command.help or ''}\n", f"Usage:\n  ollama {use} [flags]\n"]
    aliases = getattr(command, "aliases", ())
    if aliases:
        sections.append(f"Aliases:\n  {', '.join((command.name or '', *aliases))}\n")
    sections.append(f"Flags:\n{_flag_lines(command, ctx)}")
    env_vars = getattr(command, "env_vars", ())
    if env_vars:
        lines = "".join(f"      {name:<24} {DESCRIPTIONS.get(name, '')}\n" for name in env_vars)
        sections.append(f"Environment Variables:\n{lines}")
    return "\n".join(sections)


def _flag_lines(command: click.Command, ctx: click.Context) -> str:
    entries = [("  -h, --help", f"help for {command.name}")]
    for param in command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        longs = [o for o in param.opts if o.startswith("--")]
        shorts = [o for o in param.opts if not o.startswith("--")]
        flag = f"  {shorts[0]}, " if shorts else "      "
        kind = "" if param.is_flag else " string"
        if not param.is_flag and isinstance(param.flag_value, str) and param.flag_value:
            kind += f'[="{param.flag_value}"]'  # an optional value, as cobra writes it
        entries.append((f"{flag}{longs[0]}{kind}", param.help or ""))
    entries.sort(key=lambda e: e[0].split("--")[1])
    width = max(len(flag) for flag, _ in entries) + 3
    return "".join(f"{flag:<{width}}{text}\n" for flag, text in entries)


# -- the group ----------------------------------------------------------------------------------

ROOT_HELP = """Large language model runner

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
{commands}
Flags:
  -h, --help      help for ollama
  -v, --version   Show version information

Use "ollama [command] --help" for more information about a command.
"""


class OllamaGroup(click.Group):
    """The root command: aliases, cobra's unknown-command error, errors as `Error: ...`."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for candidate in self.commands.values():
            if cmd_name in getattr(candidate, "aliases", ()):
                return candidate
        return None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and self.get_command(ctx, args[0]) is None and not args[0].startswith("-"):
            raise click.ClickException(f'unknown command "{args[0]}" for "ollama"')
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientConnectionError:
            raise click.ClickException(CONNECT_ERROR_MESSAGE) from None
        except OllamaError as exc:
            raise click.ClickException(exc.message) from None
        except httpx.HTTPError as exc:
            raise click.ClickException(str(exc)) from None

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        lines = "".join(
            f"  {name:<11} {command.help or ''}\n"
            for name, command in self.commands.items()
            if not command.hidden
        )
        formatter.write(ROOT_HELP.format(commands=lines))
