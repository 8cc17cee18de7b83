"""`ollama create`: turn a Modelfile into today's `/api/create` request, as Ollama's client does.

The Modelfile is parsed here, on the client. Every FROM or ADAPTER that names a local file or
directory is hashed locally and uploaded as a blob (`HEAD /api/blobs/<digest>`, then `POST` if
the server lacks it); the request then carries `files` / `adapters` as `{basename: digest}`, a
FROM that names a model goes in `from`, and TEMPLATE, SYSTEM, PARAMETER, MESSAGE and LICENSE
become `template`, `system`, `parameters`, `messages` and `license`. The legacy `modelfile`
field is never sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollamapy.api.client import JSON, Client
from ollamapy.api.types import CreateRequest, Message
from ollamapy.cli.progress import ProgressDisplay, SpinnerLine
from ollamapy.errors import OllamaError
from ollamapy.modelfile import FromKind, Modelfile, classify_from, decode, parse

CHUNK_SIZE = 1 << 20
GATHERING = "gathering model components"

# Which files of a model directory are uploaded, tried in order: (pattern, weights only).
# A GGUF or bare .bin directory is complete by itself; the others also need their configs.
_WEIGHT_PATTERNS: tuple[tuple[str, bool], ...] = (
    ("*.safetensors", False),
    ("pytorch_model*.bin", False),
    ("consolidated*.pth", False),
    ("*.gguf", True),
    ("*.bin", True),
)
_CONFIG_PATTERNS = ("*.json", "*.jinja", "tokenizer.model", "[0-9]*_*/*.json")
"""Configs beside the weights (transformers 5 keeps the chat template in
`chat_template.jinja`), plus sentence-transformers' module folders (`1_Pooling/`)."""


class CreateError(OllamaError):
    """The Modelfile or the files it names cannot be used."""


@dataclass
class CreatePlan:
    """Where the model comes from, before the local files are uploaded."""

    from_: str | None = None
    files: list[Path] = field(default_factory=list)
    adapters: list[Path] = field(default_factory=list)


def load_modelfile(option: str | None, cwd: Path) -> tuple[Modelfile, Path]:
    """Read `-f FILE` (or `./Modelfile`); with neither, Ollama's default `FROM .`.

    Returns the parsed Modelfile and the directory its relative paths are resolved from.
    """
    path = (cwd / (option or "Modelfile")).absolute()
    if not path.is_file():
        if option:
            raise CreateError("specified Modelfile wasn't found")
        return parse("FROM .\n"), cwd
    return parse(decode(path.read_bytes())), path.parent


def plan(modelfile: Modelfile, base_dir: Path) -> CreatePlan:
    """Sort the Modelfile's FROMs and ADAPTERs into a model name and local files to upload."""
    result = CreatePlan()
    for value in modelfile.froms:
        source = classify_from(value, base_dir)
        if source.kind is FromKind.MODEL or source.kind is FromKind.BLOB or source.path is None:
            result.from_ = value
        else:
            result.files.extend(_local_files(source.path))
    for value in modelfile.adapters:
        source = classify_from(value, base_dir)
        if source.path is None:
            raise CreateError(f"invalid adapter {value!r}: not a local file or directory")
        result.adapters.extend(_local_files(source.path))
    return result


def create_request(
    name: str,
    modelfile: Modelfile,
    from_: str | None,
    files: dict[str, str],
    adapters: dict[str, str],
    quantize: str | None = None,
) -> CreateRequest:
    """Today's `/api/create` request: the uploaded files by digest plus the Modelfile's
    TEMPLATE, SYSTEM, PARAMETERs, MESSAGEs and LICENSEs; what is absent stays out of the body."""
    messages = [Message(role=m.role, content=m.content) for m in modelfile.messages]
    return CreateRequest(
        model=name,
        from_=from_,
        files=files or None,
        adapters=adapters or None,
        template=modelfile.template,
        system=modelfile.system,
        parameters=modelfile.parameters or None,
        messages=messages or None,
        license=modelfile.license or None,
        quantize=quantize or None,
    )


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.exists():
        raise CreateError(f"open {path}: no such file or directory")
    for pattern, complete in _WEIGHT_PATTERNS:
        weights = sorted(path.glob(pattern))
        if weights:
            if complete:
                return weights
            configs = [p for pat in _CONFIG_PATTERNS for p in sorted(path.glob(pat))]
            return weights + configs
    raise CreateError("no Modelfile or safetensors files found")


def file_digest(path: Path) -> str:
    """`sha256:<hex>` of a file, read in chunks (model files are gigabytes)."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def upload_blob(client: Client, path: Path, digest: str, display: ProgressDisplay) -> None:
    """Upload one file unless the server has it, showing `copying file <digest> N%`."""
    line = display.spinner(f"copying file {digest} 0%", key=f"copy {digest}")
    try:
        if not client.blob_exists(digest):
            size = path.stat().st_size
            client.create_blob(digest, _read_chunks(path, size, lambda pct: _retitle(line, pct)))
        _retitle(line, 100)
    finally:
        line.stop()


def _retitle(line: SpinnerLine, percent: int) -> None:
    digest = line.message.split(" ")[2]
    line.message = f"copying file {digest} {percent}%"


def _read_chunks(path: Path, size: int, report: Callable[[int], None]) -> Iterator[bytes]:
    sent = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            sent += len(chunk)
            report(int(100 * sent / size) if size else 100)
            yield chunk


def upload_all(
    client: Client, paths: list[Path], digests: dict[Path, str], display: ProgressDisplay
) -> dict[str, str]:
    """Upload the files; return `{name: digest}`, the form `/api/create` takes.

    A name is the file's basename, except inside a sentence-transformers module folder
    (`1_Pooling/config.json`), whose folder is kept so it cannot collide with `config.json`.
    """
    uploaded: dict[str, str] = {}
    for path in paths:
        upload_blob(client, path, digests[path], display)
        uploaded[_upload_name(path)] = digests[path]
    return uploaded


def _upload_name(path: Path) -> str:
    folder = path.parent.name
    if folder[:1].isdigit() and "_" in folder:
        return f"{folder}/{path.name}"
    return path.name


def show_progress(display: ProgressDisplay, part: JSON, state: dict[str, Any]) -> None:
    """Render one progress line: a bar per digest, else a spinner per new status."""
    digest = part.get("digest")
    status = str(part.get("status", ""))
    if digest:
        label = status or f"pulling {str(digest)[7:19]}..."
        display.bar(
            str(digest), label, int(part.get("total") or 0), int(part.get("completed") or 0)
        )
    elif status and status != state.get("status"):
        display.stop_spinners()
        state["status"] = status
        display.spinner(status)


def create_model(
    client: Client,
    name: str,
    modelfile: Modelfile,
    base_dir: Path,
    display: ProgressDisplay,
    quantize: str | None = None,
) -> None:
    """The whole of `ollama create`, drawing into an already started `display`."""
    gathering = display.spinner(GATHERING)
    sources = plan(modelfile, base_dir)
    digests = {path: file_digest(path) for path in [*sources.files, *sources.adapters]}
    gathering.stop()
    files = upload_all(client, sources.files, digests, display)
    adapters = upload_all(client, sources.adapters, digests, display)
    request = create_request(name, modelfile, sources.from_, files, adapters, quantize)
    state: dict[str, Any] = {"status": GATHERING}
    with client.create(request, stream=True) as parts:
        for part in parts:
            show_progress(display, part, state)
