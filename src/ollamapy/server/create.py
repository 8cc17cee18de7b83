"""`/api/create`: build a model's layers and manifest from either request form.

Both forms Ollama's clients send are normalised into one `CreatePlan`: the December 2024
form (`modelfile` text, or `path` to one on this machine) and today's (`from`, `files`,
`adapters`, `template`, `system`, `parameters`, `messages`, `license`). The plan is then
carried out as a generator of progress events. A failure at any step leaves no manifest,
and removes the blobs this create wrote that nothing else uses.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ollamapy import gguf
from ollamapy.api.types import CreateRequest
from ollamapy.convert import convert_model
from ollamapy.errors import BadRequestError, NotFoundError, OllamaError, TemplateError
from ollamapy.llm import quantize_type_named
from ollamapy.llm.quantize import quantize
from ollamapy.modelfile import classify_from
from ollamapy.modelfile import parse as parse_modelfile
from ollamapy.server.resolved import resolve
from ollamapy.store import Layer, Manifest, MediaType, ModelConfig, Store
from ollamapy.template import Template
from ollamapy.template.named import named_template
from ollamapy.types import Digest, ModelName
from ollamapy.types.options import OPTION_SPECS, is_deprecated_parameter, validate_options

log = logging.getLogger(__name__)

Event = dict[str, Any]
_REPLACED_BY_OVERRIDE = {
    "template": MediaType.TEMPLATE,
    "system": MediaType.SYSTEM,
    "messages": MediaType.MESSAGES,
    "license": MediaType.LICENSE,
}


@dataclass(frozen=True)
class CreatePlan:
    """What to build, whichever request form it came from."""

    name: ModelName
    base_model: ModelName | None = None
    files: dict[str, Digest] = field(default_factory=dict)
    local_files: list[Path] = field(default_factory=list)
    adapters: dict[str, Digest] = field(default_factory=dict)
    local_adapters: list[Path] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] | None = None
    licenses: list[str] | None = None
    quantize: str | None = None


def plan_from_request(request: CreateRequest) -> CreatePlan:
    """Normalise either /api/create form into a checked plan (pure apart from reading
    `path`): whatever it refuses is refused before the store is touched."""
    plan = _plan(request)
    check_template(plan.template)
    return plan


def check_template(text: str | None) -> None:
    """Refuse a TEMPLATE that does not parse, as Ollama's create does (400, `template
    error: template: :LINE: ...`), instead of storing a model that fails at its first chat.

    Ollama parses it as an unnamed Go template, hence the empty name in the message.
    """
    if text is None:
        return
    try:
        Template.parse(text)
    except TemplateError as exc:  # TemplateSyntaxError, with Go's wording and position
        raise TemplateError(f"template error: {exc.message}") from None
    except RecursionError:  # Go's parser stops at a depth of 10000; ours at Python's stack
        raise TemplateError("template error: template: :1: nested too deeply") from None


def _plan(request: CreateRequest) -> CreatePlan:
    name = ModelName.parse(request.model)
    if request.modelfile is not None or request.path is not None:
        return _plan_from_modelfile(name, request)
    if request.from_ is None and not request.files:
        raise BadRequestError("neither 'from' or 'files' was specified")
    return CreatePlan(
        name=name,
        base_model=ModelName.parse(request.from_) if request.from_ else None,
        files=_digests(request.files),
        adapters=_digests(request.adapters),
        template=request.template,
        system=request.system,
        parameters=_validate_parameters(request.parameters or {}),
        messages=_messages(request.messages),
        licenses=[request.license] if isinstance(request.license, str) else request.license,
        quantize=_quantize_type(request),
    )


def _plan_from_modelfile(name: ModelName, request: CreateRequest) -> CreatePlan:
    base_dir = Path.cwd()
    text = request.modelfile
    if text is None:
        path = Path(request.path or "").expanduser()
        base_dir = path.parent
        try:
            text = path.read_text()
        except OSError as exc:
            raise BadRequestError(f"error reading modelfile: {exc.strerror}") from None
    modelfile = parse_modelfile(text)
    plan = CreatePlan(
        name=name,
        template=modelfile.template,
        system=modelfile.system,
        parameters=modelfile.parameters,
        messages=[{"role": m.role, "content": m.content} for m in modelfile.messages] or None,
        licenses=modelfile.license or None,
        quantize=_quantize_type(request),
    )
    for source in modelfile.froms:  # the model, then e.g. its vision projector
        plan = _with_source(plan, source, base_dir)
    for adapter in modelfile.adapters:
        plan = _with_adapter(plan, adapter, base_dir)
    return plan


def _with_source(plan: CreatePlan, source: str, base_dir: Path) -> CreatePlan:
    """A FROM value: a blob digest, a local file or directory, or a model name."""
    found = classify_from(source, base_dir)
    if found.digest is not None:
        name = f"model{len(plan.files)}.gguf" if plan.files else "model.gguf"
        return replace(plan, files={**plan.files, name: found.digest})
    if found.path is not None:
        return replace(plan, local_files=[*plan.local_files, found.path])
    if plan.base_model is not None or plan.files or plan.local_files:
        raise BadRequestError(f"only the first FROM may name a model: {source}")
    return replace(plan, base_model=ModelName.parse(source))


def _with_adapter(plan: CreatePlan, source: str, base_dir: Path) -> CreatePlan:
    found = classify_from(source, base_dir)
    if found.digest is not None:
        named = {**plan.adapters, f"adapter{len(plan.adapters)}": found.digest}
        return replace(plan, adapters=named)
    if found.path is None:
        raise BadRequestError(f"adapter not found: {source}")
    return replace(plan, local_adapters=[*plan.local_adapters, found.path])


def _quantize_type(request: CreateRequest) -> str | None:
    name = request.quantize or request.quantization
    return quantize_type_named(name) if name else None


def _digests(files: dict[str, str] | None) -> dict[str, Digest]:
    return {name: Digest.parse(value) for name, value in (files or {}).items()}


def _validate_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Known parameters, typed; ones Ollama removed are dropped, other unknown ones a 400."""
    parameters = {k: v for k, v in parameters.items() if not is_deprecated_parameter(k)}
    unknown = sorted(key for key in parameters if key not in OPTION_SPECS)
    if unknown:
        raise BadRequestError(f"unknown parameter '{unknown[0]}'")
    return validate_options(parameters)


def _messages(messages: list[Any] | None) -> list[dict[str, str]] | None:
    if not messages:
        return None
    result = []
    for message in messages:
        if message.role not in ("system", "user", "assistant"):
            raise BadRequestError(f"invalid message role: {message.role!r}")
        result.append({"role": message.role, "content": message.content})
    return result


# --------------------------------------------------------------------------- carrying out


class ModelBuilder:
    """Carries out a plan against the store, remembering the blobs it wrote."""

    def __init__(self, store: Store, plan: CreatePlan) -> None:
        self.store = store
        self.plan = plan
        self.layers: list[Layer] = []
        self.config = ModelConfig()
        self.parameters: dict[str, Any] = {}
        self.written: set[Digest] = set()

    def run(self) -> Iterator[Event]:
        try:
            yield from self._build()
        finally:
            # After a failure: everything this create wrote. After success: what it wrote
            # but no longer uses (the f16 model a quantized one replaced).
            self._discard_written()

    def _build(self) -> Iterator[Event]:
        yield from self._base()
        if self.plan.quantize:
            yield from self._quantize(self.plan.quantize)
        yield from self._adapters()
        yield from self._overrides()
        yield from self._finish()

    # base layers ------------------------------------------------------------------------

    def _base(self) -> Iterator[Event]:
        if self.plan.base_model is not None:
            yield from self._from_model(self.plan.base_model)
            if not self.plan.files and not self.plan.local_files:
                return  # else: a projector added to a model (`FROM model` + `FROM mmproj`)
        yield {"status": "parsing GGUF"}
        for path in self.plan.local_files:
            yield from self._from_local(path)
        if any(name.endswith(".safetensors") for name in self.plan.files):
            yield from self._from_safetensors_files()
            return
        for filename, digest in self.plan.files.items():
            yield from self._from_blob(filename, digest)

    def _from_model(self, name: ModelName) -> Iterator[Event]:
        yield {"status": "reading model metadata"}
        base = resolve(self.store, name)
        self.config = replace(base.config, base_name=base.name.display)
        self.parameters = dict(base.parameters)
        self.layers = list(base.manifest.layers)

    def _from_local(self, path: Path) -> Iterator[Event]:
        if path.is_dir():
            yield from self._convert(path, path.name)
            return
        if not path.exists():
            raise BadRequestError(f"no such file or directory: {path}")
        yield {"status": f"copying file {path.name}"}
        digest, _size = self.store.write_blob_from_file(path)
        self.written.add(digest)
        yield from self._from_blob(path.name, digest)

    def _convert(self, model_dir: Path, name: str) -> Iterator[Event]:
        """Convert a Hugging Face Safetensors directory to an f16 GGUF model layer."""
        yield {"status": "converting model"}
        blobs = self.store.blobs_dir
        blobs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=blobs, prefix=".convert-") as tmp:
            output = Path(tmp) / "model.gguf"
            try:
                convert_model(model_dir, output, out_type="f16", name=name)
            except (OSError, ValueError, KeyError) as exc:
                raise BadRequestError(f"error converting model: {exc}") from exc
            digest, _size = self.store.write_blob_from_file(output)
        self.written.add(digest)
        yield from self._from_blob("model.gguf", digest)

    def _from_safetensors_files(self) -> Iterator[Event]:
        """`files` naming the pieces of a Safetensors model: lay them out, then convert."""
        blobs = self.store.blobs_dir
        blobs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=blobs, prefix=".import-") as tmp:
            for filename, digest in self.plan.files.items():
                source = self.store.blob_path(digest)
                if not source.is_file():
                    raise NotFoundError(f"blob {digest} not found: upload it with POST /api/blobs/")
                target = Path(tmp) / filename
                if ".." in Path(filename).parts or Path(filename).is_absolute():
                    raise BadRequestError(f"invalid file name: {filename}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
            yield from self._convert(Path(tmp), _source_name(Path(tmp)))

    def _quantize(self, file_type: str) -> Iterator[Event]:
        """Replace the model layer with its quantization to `file_type`, as Ollama does:
        only F16 and F32 models, and nothing to do when the model already is that type."""
        layer = next(layer for layer in self.layers if layer.media_type == MediaType.MODEL)
        source_type = self.config.file_type
        if source_type == file_type:
            return
        if source_type not in ("F16", "F32"):
            raise BadRequestError("quantization is only supported for F16 and F32 models")
        status = f"quantizing {source_type} model to {file_type}"
        blobs = self.store.blobs_dir
        with tempfile.TemporaryDirectory(dir=blobs, prefix=".quantize-") as tmp:
            output = Path(tmp) / "model.gguf"
            source = self.store.blob_path(layer.digest)
            for done in quantize(source, output, file_type):
                yield {
                    "status": status,
                    "digest": "0",
                    "total": done.total,
                    "completed": done.completed,
                }
            yield {"status": "verifying conversion"}
            info = gguf.read_gguf(output)
            if info.file_type != file_type:
                raise OllamaError(f"quantized model has type {info.file_type}, not {file_type}")
            digest, size = self.store.write_blob_from_file(output)
        self.written.add(digest)
        yield {"status": f"creating new layer {digest}"}
        self.layers = [
            Layer(MediaType.MODEL, digest, size) if x is layer else x for x in self.layers
        ]
        self.config = replace(self.config, file_type=info.file_type)

    def _from_blob(self, filename: str, digest: Digest) -> Iterator[Event]:
        path = self.store.blob_path(digest)
        if not path.is_file():
            raise NotFoundError(f"blob {digest} not found: upload it with POST /api/blobs/")
        if filename.endswith((".safetensors", ".json")):
            raise BadRequestError(
                f"{filename}: a Safetensors model needs its config.json, tokenizer and weights"
            )
        info = gguf.read_gguf(path)
        # A vision projector (llama.cpp's mmproj, architecture `clip`) whatever its place;
        # a second language model after the first also serves as one (Ollama's rule).
        projector = info.architecture == "clip" or self._has(MediaType.MODEL)
        media = MediaType.PROJECTOR if projector else MediaType.MODEL
        self.layers.append(Layer(media, digest, path.stat().st_size))
        yield {"status": f"using existing layer {digest}"}
        if media is MediaType.MODEL:
            self.config = _config_from_gguf(info)
            yield from self._autodetect_template(info.chat_template)

    def _autodetect_template(self, chat_template: str | None) -> Iterator[Event]:
        if self.plan.template is not None or not chat_template:
            return
        found = named_template(chat_template)
        if found is None:
            return
        yield {"status": f"using autodetected template {found.name}"}
        self._set_text(MediaType.TEMPLATE, found.template)
        self.parameters = {**found.parameters, **self.parameters}

    def _adapters(self) -> Iterator[Event]:
        digests = list(self.plan.adapters.values())
        for path in self.plan.local_adapters:
            yield {"status": f"copying adapter {path.name}"}
            digest, _ = self.store.write_blob_from_file(path)
            self.written.add(digest)
            digests.append(digest)
        for digest in digests:
            if not self.store.has_blob(digest):
                raise NotFoundError(f"adapter blob {digest} not found")
            self.layers.append(Layer(MediaType.ADAPTER, digest, self._size(digest)))
            yield {"status": f"using existing layer {digest}"}

    # overrides --------------------------------------------------------------------------

    def _overrides(self) -> Iterator[Event]:
        plan = self.plan
        if plan.template is not None:
            yield {"status": "creating template layer"}
            self._set_text(MediaType.TEMPLATE, plan.template)
        if plan.system is not None:
            yield {"status": "creating system layer"}
            self._set_text(MediaType.SYSTEM, plan.system)
        if plan.messages is not None:
            self._set_text(MediaType.MESSAGES, json.dumps(plan.messages))
        if plan.licenses is not None:
            self._drop(MediaType.LICENSE)
            for text in plan.licenses:
                self.layers.append(self._text_layer(MediaType.LICENSE, text))
        if plan.parameters or self.parameters:
            self.parameters = {**self.parameters, **plan.parameters}
            self._drop(MediaType.PARAMS)
            data = json.dumps(self.parameters, separators=(",", ":"))
            self.layers.append(self._text_layer(MediaType.PARAMS, data))
        yield from ()

    def _set_text(self, media_type: MediaType, text: str) -> None:
        self._drop(media_type)
        self.layers.append(self._text_layer(media_type, text))

    def _text_layer(self, media_type: MediaType, text: str) -> Layer:
        digest, size = self._write_bytes(text.encode())
        return Layer(media_type, digest, size)

    # finishing --------------------------------------------------------------------------

    def _finish(self) -> Iterator[Event]:
        if not self._has(MediaType.MODEL):
            raise BadRequestError("no model layer: FROM must name a model or a GGUF file")
        diff_ids = tuple(str(layer.digest) for layer in self.layers)
        config_bytes = replace(self.config, diff_ids=diff_ids).to_bytes()
        config_digest, config_size = self._write_bytes(config_bytes)
        manifest = Manifest(
            config=Layer(
                "application/vnd.docker.container.image.v1+json", config_digest, config_size
            ),
            layers=tuple(self.layers),
        )
        yield {"status": "writing manifest"}
        self.store.write_manifest(self.plan.name, manifest)
        yield {"status": "success"}

    def _write_bytes(self, data: bytes) -> tuple[Digest, int]:
        digest = Digest.of_bytes(data)
        if not self.store.has_blob(digest):
            self.store.write_blob([data], digest)
            self.written.add(digest)
        return digest, len(data)

    def _has(self, media_type: MediaType) -> bool:
        return any(layer.media_type == media_type for layer in self.layers)

    def _drop(self, media_type: MediaType) -> None:
        self.layers = [layer for layer in self.layers if layer.media_type != media_type]

    def _size(self, digest: Digest) -> int:
        return self.store.blob_path(digest).stat().st_size

    def _discard_written(self) -> None:
        """Remove blobs this create wrote that no manifest references."""
        self.store.remove_unreferenced(self.written)


def _source_name(model_dir: Path) -> str:
    """A name for uploaded pieces taken from their content (config.json's `_name_or_path`),
    never from the temporary folder they are laid out in, so the same files always convert
    to the same blob."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return "model"
    source = config.get("_name_or_path") if isinstance(config, dict) else None
    return source.rsplit("/", 1)[-1] if isinstance(source, str) and source else "model"


def _config_from_gguf(info: gguf.GGUFInfo) -> ModelConfig:
    return ModelConfig(
        model_format="gguf",
        model_family=info.model_family,
        model_families=(info.model_family,),
        model_type=gguf.format_parameter_count(info.parameter_count),
        file_type=info.file_type,
    )


def create_model(store: Store, request: CreateRequest) -> Iterator[Event]:
    """Check the request now (bad input is a plain 4xx), then return the progress events."""
    plan = plan_from_request(request)
    if plan.base_model is not None:
        store.read_manifest(plan.base_model)
    return _progress(ModelBuilder(store, plan))


def _progress(builder: ModelBuilder) -> Iterator[Event]:
    yield {"status": "gathering model components"}
    yield from builder.run()


__all__ = [
    "CreatePlan",
    "ModelBuilder",
    "OllamaError",
    "check_template",
    "create_model",
    "plan_from_request",
]
