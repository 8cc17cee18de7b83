"""Safetensors (Hugging Face directory) → GGUF conversion, so `ollama create` can import it.

The conversion is planned first from headers and JSON alone (names, shapes, hyper-parameters,
vocabulary), so every structural problem is reported before a byte of output is written.
Tensors are then streamed one at a time from memory maps into a temporary file that is
renamed into place only when complete: a failed or interrupted conversion never leaves a
half-written model behind, and memory use stays at about one tensor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
import numpy.typing as npt

from ollamapy.convert import bert
from ollamapy.convert.hf import architecture_of, load_config, read_sentence_transformers
from ollamapy.convert.safetensors import Checkpoint, open_checkpoint
from ollamapy.convert.wordpiece import WordPieceVocab, load_wordpiece_vocab
from ollamapy.errors import BadRequestError

OutType = Literal["f16", "f32"]
ProgressCallback = Callable[[int, int], None]
"""Called as `progress(bytes_written, total_bytes)` after each tensor."""

SUPPORTED_ARCHITECTURES = bert.HF_ARCHITECTURES

_FILE_TYPES: dict[str, gguf.LlamaFileType] = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
}
_POOLING: dict[str, gguf.PoolingType] = {
    "mean": gguf.PoolingType.MEAN,
    "cls": gguf.PoolingType.CLS,
    "last": gguf.PoolingType.LAST,
}


@dataclass(frozen=True)
class ConversionResult:
    """What was written, for the caller's progress messages and the model's metadata."""

    output: Path
    source_architecture: str
    architecture: str
    file_type: OutType
    tensor_count: int
    parameter_count: int
    context_length: int
    embedding_length: int
    block_count: int
    vocab_size: int
    pooling: str | None
    size: int


@dataclass(frozen=True)
class _PlannedTensor:
    """One output tensor: where it comes from and how it is stored."""

    gguf_name: str
    hf_name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def detect_architecture(model_dir: Path) -> str:
    """The model class named in config.json, if we can convert it; a clear error otherwise."""
    arch = architecture_of(load_config(model_dir))
    if arch not in SUPPORTED_ARCHITECTURES:
        supported = ", ".join(SUPPORTED_ARCHITECTURES)
        raise BadRequestError(
            f"unsupported architecture {arch!r}: only {supported} can be converted "
            "from Safetensors so far"
        )
    return arch


def convert_model(
    model_dir: Path,
    output: Path,
    *,
    out_type: OutType = "f16",
    name: str | None = None,
    progress: ProgressCallback | None = None,
) -> ConversionResult:
    """Convert a Hugging Face Safetensors model directory into a GGUF file at `output`.

    `out_type` "f16" stores matrices as float16 (norms, biases and position/type embeddings
    stay float32, as llama.cpp expects); "f32" keeps everything float32. Never touches the
    network: every input comes from `model_dir`.
    """
    if out_type not in _FILE_TYPES:
        raise BadRequestError(f"unsupported output type {out_type!r}: use 'f16' or 'f32'")
    source_arch = detect_architecture(model_dir)
    config = load_config(model_dir)
    checkpoint = open_checkpoint(model_dir)
    st_info = read_sentence_transformers(model_dir)
    hp = bert.bert_hparams(config, st_info, checkpoint)
    plan = _plan_tensors(checkpoint, hp, out_type)
    vocab = load_wordpiece_vocab(model_dir, hp.n_vocab)
    writer_name = name or model_dir.resolve().name

    def add_metadata(writer: gguf.GGUFWriter) -> None:
        _add_metadata(writer, hp, vocab, out_type, writer_name)

    size = _write(output, plan, checkpoint, progress, add_metadata)
    return ConversionResult(
        output=output,
        source_architecture=source_arch,
        architecture=bert.GGUF_ARCHITECTURE,
        file_type=out_type,
        tensor_count=len(plan),
        parameter_count=sum(math.prod(t.shape) for t in plan),
        context_length=hp.context_length,
        embedding_length=hp.n_embd,
        block_count=hp.n_layer,
        vocab_size=hp.n_vocab,
        pooling=hp.pooling,
        size=size,
    )


def _plan_tensors(
    checkpoint: Checkpoint, hp: bert.BertHParams, out_type: OutType
) -> list[_PlannedTensor]:
    """Map, shape-check and order every tensor; report the first missing or unexpected one."""
    sources: dict[str, str] = {}
    for hf_name in checkpoint:
        gguf_name = bert.gguf_tensor_name(hf_name)
        if gguf_name is None:
            continue
        if gguf_name in sources:
            raise BadRequestError(f"tensors {sources[gguf_name]!r} and {hf_name!r} collide")
        sources[gguf_name] = hf_name
    required = bert.required_tensors(hp.n_layer)
    if missing := [n for n in required if n not in sources]:
        raise BadRequestError(
            f"checkpoint is missing {len(missing)} tensor(s), e.g. {missing[0]!r}"
        )
    if extra := sorted(set(sources) - set(required)):
        raise BadRequestError(f"tensor {sources[extra[0]]!r} is beyond num_hidden_layers")
    return [_plan_one(name, sources[name], checkpoint, hp, out_type) for name in required]


def _plan_one(
    gguf_name: str, hf_name: str, checkpoint: Checkpoint, hp: bert.BertHParams, out_type: OutType
) -> _PlannedTensor:
    """Check one tensor's source shape and dtype and pick its storage type."""
    info = checkpoint[hf_name]
    want = bert.expected_shape(gguf_name, hp)
    if info.shape != want:
        raise BadRequestError(
            f"tensor {hf_name!r} has shape {list(info.shape)}, expected {list(want)}"
        )
    if info.dtype not in ("F32", "F16", "BF16", "F64"):
        raise BadRequestError(f"tensor {hf_name!r} has non-float dtype {info.dtype}")
    shape = info.shape
    if bert.tensor_kind(gguf_name) == gguf.MODEL_TENSOR.POS_EMBD:
        # llama.cpp insists on exactly `context_length` rows; positions past the context
        # (e.g. 256..511 for all-MiniLM-L6-v2) can never be used, so they are cut.
        shape = (hp.context_length, hp.n_embd)
    return _PlannedTensor(gguf_name, hf_name, shape, _storage_dtype(gguf_name, shape, out_type))


def _storage_dtype(gguf_name: str, shape: tuple[int, ...], out_type: OutType) -> np.dtype[Any]:
    """f16 only for 2-D weight matrices; vectors, norms and small embeddings stay f32."""
    keep_f32 = (
        out_type == "f32"
        or len(shape) < 2
        or gguf_name.endswith("_norm.weight")
        or bert.tensor_kind(gguf_name) in bert.FLOAT32_ONLY
    )
    return np.dtype(np.float32 if keep_f32 else np.float16)


def _add_metadata(
    writer: gguf.GGUFWriter,
    hp: bert.BertHParams,
    vocab: WordPieceVocab,
    out_type: OutType,
    name: str,
) -> None:
    """General, architecture and tokenizer key/values, as llama.cpp's BERT loader reads them."""
    writer.add_name(name)
    writer.add_file_type(_FILE_TYPES[out_type])
    writer.add_context_length(hp.context_length)
    writer.add_embedding_length(hp.n_embd)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_block_count(hp.n_layer)
    writer.add_head_count(hp.n_head)
    writer.add_layer_norm_eps(hp.layer_norm_eps)
    writer.add_causal_attention(False)
    if hp.pooling is not None:
        writer.add_pooling_type(_POOLING[hp.pooling])
    _add_vocab(writer, hp, vocab)


def _add_vocab(writer: gguf.GGUFWriter, hp: bert.BertHParams, vocab: WordPieceVocab) -> None:
    """The WordPiece vocabulary and special tokens; [CLS] and [SEP] frame every input."""
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab.llama_tokens())
    writer.add_token_types(vocab.types)
    writer.add_token_type_count(hp.type_vocab_size)
    ids = vocab.special_ids
    writer.add_bos_token_id(ids["cls"])
    writer.add_eos_token_id(ids["sep"])
    writer.add_unk_token_id(ids["unk"])
    writer.add_sep_token_id(ids["sep"])
    if "pad" in ids:
        writer.add_pad_token_id(ids["pad"])
    if "mask" in ids:
        writer.add_mask_token_id(ids["mask"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)
    writer.add_add_sep_token(False)


def _write(
    output: Path,
    plan: list[_PlannedTensor],
    checkpoint: Checkpoint,
    progress: ProgressCallback | None,
    add_metadata: Callable[[gguf.GGUFWriter], None],
) -> int:
    """Stream the tensors into `<output>.tmp`, then rename it over `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    total, done = sum(t.nbytes for t in plan), 0
    writer = gguf.GGUFWriter(tmp, bert.GGUF_ARCHITECTURE)
    try:
        add_metadata(writer)
        for t in plan:
            writer.add_tensor_info(t.gguf_name, t.shape, t.dtype, t.nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in plan:
            writer.write_tensor_data(_load(checkpoint, t))
            done += t.nbytes
            if progress is not None:
                progress(done, total)
        writer.close()
        os.replace(tmp, output)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return output.stat().st_size


def _load(checkpoint: Checkpoint, t: _PlannedTensor) -> npt.NDArray[Any]:
    """Read a tensor, cut it to the planned shape and cast it to its storage type."""
    data = checkpoint.load(t.hf_name)
    data = data[tuple(slice(0, n) for n in t.shape)]
    return np.ascontiguousarray(data, dtype=t.dtype)
