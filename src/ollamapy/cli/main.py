"""`ollama`: Ollama's commands, messages and tables, talking to the server over HTTP.

Every command but `serve` is a thin function: connect, make one or two API calls, print what
Ollama prints. The formatting lives in `format`/`tables`/`show`, the streaming in `run`, the
REPL in `repl`, the Modelfile-to-request logic in `create`, the cobra look-alike in `commands`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import click

from ollamapy import OLLAMA_VERSION
from ollamapy.api.client import Client, ClientError, ResponseError
from ollamapy.api.types import CopyRequest, GenerateRequest, PushRequest, ShowRequest
from ollamapy.cli.commands import Deps, OllamaCommand, OllamaGroup, connect, deps
from ollamapy.cli.create import create_model, load_modelfile, show_progress
from ollamapy.cli.format import render_table
from ollamapy.cli.images import ImageFileError, extract_images
from ollamapy.cli.keys import keys
from ollamapy.cli.progress import ProgressDisplay, spinner
from ollamapy.cli.repl import Repl
from ollamapy.cli.run import RunOptions, Session, parse_think, pull_progress, show_or_pull
from ollamapy.cli.show import render_show
from ollamapy.cli.tables import LIST_HEADER, PS_HEADER, list_rows, ps_rows
from ollamapy.config import DESCRIPTIONS, Config
from ollamapy.types.duration import parse_duration
from ollamapy.types.names import ModelName

UNAUTHORIZED = (
    "you are not authorized to push to this namespace, create the model under a namespace you own"
)
HOST_ENV = ("OLLAMA_HOST",)
SHOW_FLAGS = ("license", "modelfile", "parameters", "system", "template")
_TRUTHY = {"1", "t", "true", "yes", "on"}


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """`ollama -v`: the server's version, with Ollama's warnings when it differs or is absent."""
    if not value or ctx.resilient_parsing:
        return
    out = deps(ctx).term().out
    server = ""
    try:
        with deps(ctx).make_client() as client:
            server = client.version()
    except ResponseError as exc:  # a server is there, but refuses (a key is needed: 401)
        out.write(f"Warning: {exc.message}\n")
    except ClientError:
        out.write("Warning: could not connect to a running Ollama instance\n")
    if server:
        out.write(f"ollama version is {server}\n")
    if server != OLLAMA_VERSION:  # the client speaks the same Ollama API as our server
        out.write(f"Warning: client version is {OLLAMA_VERSION}\n")
    ctx.exit(0)


@click.group(
    cls=OllamaGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Large language model runner",
)
@click.option(
    "-v",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show version information",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is None:
        deps(ctx).term().out.write(ctx.get_help() + "\n")


def _write(ctx: click.Context, text: str) -> None:
    out = deps(ctx).term().out
    out.write(text)
    out.flush()


def _console(ctx: click.Context) -> ProgressDisplay:
    return ProgressDisplay(deps(ctx).term().console())


# -- serve --------------------------------------------------------------------------------------


@cli.command(
    "serve",
    cls=OllamaCommand,
    help="Start ollama",
    max_args=0,
    aliases=("start",),
    env_vars=tuple(DESCRIPTIONS),
)
def serve(args: Sequence[str]) -> None:
    from ollamapy.server.app import run_server  # the CLI loads the server only here

    run_server(Config.from_env())


# -- create -------------------------------------------------------------------------------------


@cli.command(
    "create",
    cls=OllamaCommand,
    help="Create a model",
    use="create MODEL",
    min_args=1,
    max_args=1,
    env_vars=HOST_ENV,
)
@click.option(
    "-f", "--file", "file_", default="", help='Name of the Modelfile (default "Modelfile")'
)
@click.option("-q", "--quantize", default="", help="Quantize model to this level (e.g. q4_K_M)")
@click.pass_context
def create(ctx: click.Context, args: Sequence[str], file_: str, quantize: str) -> None:
    client = connect(ctx)
    modelfile, base_dir = load_modelfile(file_ or None, Path.cwd())
    with _console(ctx) as display:
        create_model(client, args[0], modelfile, base_dir, display, quantize or None)


# -- show ---------------------------------------------------------------------------------------


@cli.command(
    "show",
    cls=OllamaCommand,
    help="Show information for a model",
    use="show MODEL",
    min_args=1,
    max_args=1,
    env_vars=HOST_ENV,
)
@click.option("--license", "license_", is_flag=True, help="Show license of a model")
@click.option("--modelfile", is_flag=True, help="Show Modelfile of a model")
@click.option("--parameters", is_flag=True, help="Show parameters of a model")
@click.option("--template", is_flag=True, help="Show template of a model")
@click.option("--system", is_flag=True, help="Show system message of a model")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed model information")
@click.pass_context
def show(
    ctx: click.Context,
    args: Sequence[str],
    license_: bool,
    modelfile: bool,
    parameters: bool,
    template: bool,
    system: bool,
    verbose: bool,
) -> None:
    flags = {"license": license_, "modelfile": modelfile, "parameters": parameters}
    flags |= {"template": template, "system": system}
    chosen = [name for name in SHOW_FLAGS if flags.get(name)]
    if len(chosen) > 1:
        raise click.ClickException(
            "only one of '--license', '--modelfile', '--parameters', '--system', or "
            "'--template' can be specified"
        )
    resp = connect(ctx).show(ShowRequest(model=args[0], verbose=verbose))
    if not chosen:
        _write(ctx, render_show(resp, verbose))
        return
    text = resp.get(chosen[0]) or ""
    text = "\n".join(text) if isinstance(text, list) else str(text)
    # Ollama ends license, modelfile and parameters with a newline; system and template as-is.
    _write(ctx, text if chosen[0] in ("system", "template") else f"{text}\n")


# -- run ----------------------------------------------------------------------------------------


@cli.command(
    "run",
    cls=OllamaCommand,
    help="Run a model",
    use="run MODEL [PROMPT]",
    min_args=1,
    env_vars=("OLLAMA_HOST", "OLLAMA_NOHISTORY"),
)
@click.option("--format", "format_", default="", help="Response format (e.g. json)")
@click.option("--keepalive", default="", help="Duration to keep a model loaded (e.g. 5m)")
@click.option("--verbose", is_flag=True, help="Show timings for response")
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
@click.option("--nowordwrap", is_flag=True, help="Don't wrap words to the next line automatically")
@click.option(
    "--think",
    is_flag=False,
    flag_value="true",
    default=None,
    help="Enable thinking mode: true/false or high/medium/low for supported models",
)
@click.option("--hidethinking", is_flag=True, help="Hide thinking output (if provided)")
@click.pass_context
def run(
    ctx: click.Context,
    args: Sequence[str],
    format_: str,
    keepalive: str,
    verbose: bool,
    insecure: bool,
    nowordwrap: bool,
    think: str | None,
    hidethinking: bool,
) -> None:
    if keepalive:
        parse_duration(keepalive)  # reject a bad duration before talking to the server
    opts = RunOptions(
        model=args[0],
        format=format_,
        keep_alive=keepalive or None,
        think=parse_think(think),
        think_explicit=think is not None,
        hide_thinking=hidethinking,
        verbose=verbose,
        word_wrap=not nowordwrap,
    )
    term = deps(ctx).term()
    prompts = list(args[1:])
    interactive = term.stdin_tty and not prompts and term.stdout_tty
    if not term.stdin_tty:
        piped = term.stdin.read()
        if piped:
            prompts.insert(0, piped)
    opts.prompt = " ".join(prompts)
    session = Session(connect(ctx), term)
    info = show_or_pull(session.client, session.console, opts.model, insecure)
    capabilities = _apply_model_info(opts, info)
    if "embedding" in capabilities:
        if not opts.prompt:
            raise click.ClickException(
                "embedding models require input text. "
                f'Usage: ollama run {opts.model} "your text here"'
            )
        session.embed(opts)
    elif interactive:
        _interactive(ctx, session, opts, info)
    else:
        if opts.multimodal:
            opts.prompt, opts.images = _prompt_images(opts.prompt, term.err)
        session.generate(opts)


def _prompt_images(prompt: str, err: TextIO) -> tuple[str, list[str]]:
    """The prompt without its image paths, and those images base64-encoded."""
    try:
        text, images = extract_images(prompt, err)
    except (ImageFileError, OSError) as exc:
        raise click.ClickException(f"Couldn't process image: {exc}") from None
    return text, [base64.b64encode(image).decode() for image in images]


def _apply_model_info(opts: RunOptions, info: dict[str, object]) -> list[str]:
    """Fill in what the session learns from `/api/show`; return the model's capabilities."""
    raw = info.get("capabilities")
    capabilities = [str(c) for c in raw] if isinstance(raw, list) else []
    if not opts.think_explicit and "thinking" in capabilities:
        opts.think = True
    model_info = info.get("model_info")
    keys = model_info.keys() if isinstance(model_info, dict) else ()
    opts.multimodal = (
        "vision" in capabilities
        or bool(info.get("projector_info"))
        or any(".vision." in key for key in keys)
    )
    details = info.get("details")
    if isinstance(details, dict):
        opts.parent_model = str(details.get("parent_model") or "")
    return capabilities


def _interactive(
    ctx: click.Context, session: Session, opts: RunOptions, info: dict[str, object]
) -> None:
    """Load the model behind a spinner, replay the model's MESSAGEs, then start the REPL."""
    session.load(opts)
    out = session.term.out
    messages = info.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if message.get("role") == "user":
            out.write(f">>> {message.get('content', '')}\n")
        elif message.get("role") == "assistant":
            session.writer(opts).write(str(message.get("content", "")))
            out.write("\n\n")
    history = not _env_flag("OLLAMA_NOHISTORY")
    Repl(session, opts, deps(ctx).make_reader(history)).run()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUTHY


# -- stop, pull, push -------------------------------------------------------------------------


def _unload(client: Client, ctx: click.Context, model: str) -> None:
    """What `ollama stop` sends: a generate with no prompt and keep_alive 0."""
    with (
        spinner(deps(ctx).term().console()),
        client.generate(GenerateRequest(model=model, keep_alive=0), stream=True) as parts,
    ):
        for _ in parts:
            pass


@cli.command(
    "stop",
    cls=OllamaCommand,
    help="Stop a running model",
    use="stop MODEL",
    min_args=1,
    max_args=1,
    env_vars=HOST_ENV,
)
@click.pass_context
def stop(ctx: click.Context, args: Sequence[str]) -> None:
    try:
        _unload(connect(ctx), ctx, args[0])
    except ResponseError as exc:
        if exc.status_code == 404:
            raise click.ClickException(f'couldn\'t find model "{args[0]}" to stop') from None
        raise


@cli.command(
    "pull",
    cls=OllamaCommand,
    help="Pull a model from a registry",
    use="pull MODEL",
    min_args=1,
    max_args=1,
    env_vars=HOST_ENV,
)
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
@click.pass_context
def pull(ctx: click.Context, args: Sequence[str], insecure: bool) -> None:
    pull_progress(connect(ctx), deps(ctx).term().console(), args[0], insecure)


@cli.command(
    "push",
    cls=OllamaCommand,
    help="Push a model to a registry",
    use="push MODEL",
    min_args=1,
    max_args=1,
    env_vars=HOST_ENV,
)
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
@click.pass_context
def push(ctx: click.Context, args: Sequence[str], insecure: bool) -> None:
    client = connect(ctx)
    state: dict[str, object] = {}
    try:
        with (
            _console(ctx) as display,
            client.push(PushRequest(model=args[0], insecure=insecure), stream=True) as parts,
        ):
            for part in parts:
                if part.get("digest"):  # Ollama labels push bars by digest, whatever the status
                    part = {**part, "status": f"pushing {str(part['digest'])[7:19]}..."}
                show_progress(display, part, state)
    except ResponseError as exc:
        lowered = exc.message.lower()
        if "access denied" in lowered or "unauthorized" in lowered:
            raise click.ClickException(UNAUTHORIZED) from None
        raise
    _write(ctx, f"\nYou can find your model at:\n\n\t{_push_destination(args[0])}\n")


def _push_destination(model: str) -> str:
    name = ModelName.parse(model)
    if name.host.endswith((".ollama.ai", ".ollama.com")):
        return "https://ollama.com/" + name.display.removesuffix(":latest")
    return f"{name.host}/{name.namespace}/{name.model}:{name.tag}"


# -- list, ps, cp, rm -------------------------------------------------------------------------


@cli.command("list", cls=OllamaCommand, help="List models", aliases=("ls",), env_vars=HOST_ENV)
@click.pass_context
def list_(ctx: click.Context, args: Sequence[str]) -> None:
    models = connect(ctx).list().get("models") or []
    rows = list_rows(models, args[0] if args else "", deps(ctx).now())
    _write(ctx, render_table(rows, LIST_HEADER))


@cli.command("ps", cls=OllamaCommand, help="List running models", env_vars=HOST_ENV)
@click.pass_context
def ps(ctx: click.Context, args: Sequence[str]) -> None:
    models = connect(ctx).ps().get("models") or []
    rows = ps_rows(models, args[0] if args else "", deps(ctx).now())
    _write(ctx, render_table(rows, PS_HEADER))


@cli.command(
    "cp",
    cls=OllamaCommand,
    help="Copy a model",
    use="cp SOURCE DESTINATION",
    min_args=2,
    max_args=2,
    env_vars=HOST_ENV,
)
@click.pass_context
def cp(ctx: click.Context, args: Sequence[str]) -> None:
    connect(ctx).copy(CopyRequest(source=args[0], destination=args[1]))
    _write(ctx, f"copied '{args[0]}' to '{args[1]}'\n")


@cli.command(
    "rm",
    cls=OllamaCommand,
    help="Remove a model",
    use="rm MODEL [MODEL...]",
    min_args=1,
    env_vars=HOST_ENV,
)
@click.pass_context
def rm(ctx: click.Context, args: Sequence[str]) -> None:
    client = connect(ctx)
    try:
        _unload(client, ctx, args[0])  # Ollama unloads the (first) model before deleting
    except ResponseError as exc:
        if "not found" not in exc.message.lower():
            deps(ctx).term().err.write(f"Warning: unable to stop model '{args[0]}'\n")
    for name in args:
        client.delete(name)
        _write(ctx, f"deleted '{name}'\n")


# -- help ---------------------------------------------------------------------------------------


@cli.command("help", cls=OllamaCommand, help="Help about any command", use="help [command]")
@click.pass_context
def help_(ctx: click.Context, args: Sequence[str]) -> None:
    parent = ctx.parent or ctx
    target = cli.get_command(parent, args[0]) if args else None
    if target is None:
        _write(ctx, parent.get_help() + "\n")
        return
    with click.Context(target, info_name=target.name, parent=parent) as sub:
        _write(ctx, target.get_help(sub) + "\n")


cli.add_command(keys)


def main(argv: Sequence[str] | None = None, deps_: Deps | None = None) -> None:
    """The `ollama` console script (and `python -m ollamapy`)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="ollama", obj=deps_)
