"""`ollama keys create|list|revoke`: the server's API keys, edited in the local key file.

These commands work on the file beside the store (`config.keys_file`), not over HTTP: the
key file is the server's configuration, like its models directory, and a running server
re-reads it when it changes. A new key is printed once, alone on stdout (so `KEY=$(ollama
keys create ci)` works), with what it may do on stderr; only its hash is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import click

from ollamapy.auth import KeyFile, parse_expiry, parse_scopes
from ollamapy.auth.keys import ApiKey
from ollamapy.cli.commands import OllamaCommand, deps
from ollamapy.cli.format import human_time, render_table
from ollamapy.config import keys_file

KEYS_HEADER = ("NAME", "KEY", "SCOPES", "MODELS", "CREATED", "EXPIRES")


class KeysGroup(click.Group):
    """`ollama keys`: its help lists the three subcommands, cobra-style."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        lines = "".join(f"  {name:<8} {cmd.help or ''}\n" for name, cmd in self.commands.items())
        formatter.write(
            f"{self.help}\n\nUsage:\n  ollama keys [command]\n\nAvailable Commands:\n{lines}\n"
            "Flags:\n  -h, --help   help for keys\n"
        )


@click.group("keys", cls=KeysGroup, help="Manage API keys", invoke_without_command=True)
@click.pass_context
def keys(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        deps(ctx).term().out.write(ctx.get_help() + "\n")


def _file() -> KeyFile:
    return KeyFile(keys_file())


@keys.command(
    "create",
    cls=OllamaCommand,
    help="Create an API key and print it once",
    use="keys create NAME",
    min_args=1,
    max_args=1,
    env_vars=("OLLAMA_MODELS",),
)
@click.option(
    "--scope",
    default="all",
    help="What the key may do: generate, embed, manage, metrics or all (comma-separated)",
)
@click.option(
    "--models", default="", help="Model name patterns the key may use (e.g. llama3*,qwen3:*)"
)
@click.option("--expires", default="", help="Lifetime of the key (e.g. 30d, 12h); default never")
@click.pass_context
def create(ctx: click.Context, args: Sequence[str], scope: str, models: str, expires: str) -> None:
    scopes = parse_scopes(scope)
    lifetime = parse_expiry(expires) if expires else None
    patterns = [pattern.strip() for pattern in models.split(",") if pattern.strip()]
    now = deps(ctx).now().astimezone(UTC)
    secret, key = _file().create(args[0], scopes, patterns, lifetime, now=now)
    term = deps(ctx).term()
    term.err.write(f"Created API key '{key.name}' ({_describe(key)}). It is not shown again:\n")
    term.err.flush()
    term.out.write(f"{secret}\n")
    term.out.flush()


@keys.command("list", cls=OllamaCommand, help="List API keys", use="keys list", max_args=0)
@click.pass_context
def list_(ctx: click.Context, args: Sequence[str]) -> None:
    now = deps(ctx).now()
    rows = [_row(key, now) for key in _file().load().keys]
    term = deps(ctx).term()
    term.out.write(render_table(rows, KEYS_HEADER))
    term.out.flush()


@keys.command(
    "revoke",
    cls=OllamaCommand,
    help="Revoke an API key",
    use="keys revoke NAME",
    min_args=1,
    max_args=1,
)
@click.pass_context
def revoke(ctx: click.Context, args: Sequence[str]) -> None:
    key = _file().revoke(args[0])
    term = deps(ctx).term()
    term.out.write(f"revoked API key '{key.name}'\n")
    term.out.flush()


def _describe(key: ApiKey) -> str:
    scopes = ",".join(sorted(key.scopes))
    models = ",".join(key.models) or "all models"
    expiry = f"expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "no expiry"
    return f"scopes {scopes}; {models}; {expiry}"


def _row(key: ApiKey, now: datetime) -> list[str]:
    """One `keys list` line: the key's hint, never its secret (the file has none)."""
    moment = now.astimezone(UTC)
    expires = "Never" if key.expires_at is None else human_time(key.expires_at, moment)
    if key.expired(moment):
        expires = f"expired {expires}"
    return [
        key.name,
        f"{key.hint}...",
        ",".join(sorted(key.scopes)),
        ",".join(key.models) or "*",
        human_time(key.created_at, moment),
        expires,
    ]
