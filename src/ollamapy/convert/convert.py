"""Safetensors (Hugging Face directory) → GGUF conversion, so `ollama create` can import it.

config.json's `architectures` picks the converter (BERT embedding models; Llama, Mistral,
Qwen2, Qwen3, Gemma and Phi-3 decoders, which share one table-driven path described by a
`llama.DecoderSpec`).
Each conversion is planned first from headers and JSON alone (names, shapes,
hyper-parameters, vocabulary), so every structural problem is reported before a byte of
output is written; `plan.write_gguf` then streams the tensors into place atomically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy.typing as npt

from ollamapy.convert import bert, bpe, gemma, llama, mistral, phi3, qwen, spm
from ollamapy.convert.hf import architecture_of, load_config, read_sentence_transformers
from ollamapy.convert.plan import (
    FILE_TYPES,
    OutType,
    PlannedTensor,
    ProgressCallback,
    TransformerShape,
    add_shape,
    storage_dtype,
    write_gguf,
)
from ollamapy.convert.safetensors import Checkpoint, open_checkpoint
from ollamapy.convert.wordpiece import WordPieceVocab, load_wordpiece_vocab
from ollamapy.errors import BadRequestError

__all__ = ["OutType", "ProgressCallback"]

_DECODERS: dict[str, llama.DecoderSpec] = {
    spec.hf_architecture: spec
    for spec in (llama.LLAMA, *mistral.SPECS, *qwen.SPECS, *gemma.SPECS, *phi3.SPECS)
}
SUPPORTED_ARCHITECTURES = (*bert.HF_ARCHITECTURES, *_DECODERS)
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
    if out_type not in FILE_TYPES:
        raise BadRequestError(f"unsupported output type {out_type!r}: use 'f16' or 'f32'")
    source_arch = detect_architecture(model_dir)
    convert = _CONVERTERS[source_arch]
    return convert(model_dir, output, out_type, name or model_dir.resolve().name, progress)


_Converter = Callable[[Path, Path, OutType, str, ProgressCallback | None], ConversionResult]


def _convert_bert(
    model_dir: Path, output: Path, out_type: OutType, name: str, progress: ProgressCallback | None
) -> ConversionResult:
    """BertModel → llama.cpp `bert` (an embedding model with the pooling of its export)."""
    config = load_config(model_dir)
    checkpoint = open_checkpoint(model_dir)
    st_info = read_sentence_transformers(model_dir)
    hp = bert.bert_hparams(config, st_info, checkpoint)
    plan = _plan_tensors(checkpoint, hp, out_type)
    vocab = load_wordpiece_vocab(model_dir, hp.n_vocab)

    def add_metadata(writer: gguf.GGUFWriter) -> None:
        _add_metadata(writer, hp, vocab, out_type, name)

    size = write_gguf(output, bert.GGUF_ARCHITECTURE, plan, progress, add_metadata)
    return _result(output, config, bert.GGUF_ARCHITECTURE, out_type, plan, size, hp, hp.pooling)


def _convert_decoder(spec: llama.DecoderSpec) -> _Converter:
    """A converter for one Llama-family model class, with its byte-level BPE or
    SentencePiece-style tokenizer."""

    def convert(
        model_dir: Path,
        output: Path,
        out_type: OutType,
        name: str,
        progress: ProgressCallback | None,
    ) -> ConversionResult:
        config = load_config(model_dir)
        checkpoint = open_checkpoint(model_dir)
        hp = llama.llama_hparams(config, checkpoint, spec)
        plan = llama.plan_tensors(checkpoint, hp, out_type, spec)
        vocab = _load_decoder_vocab(model_dir, hp.n_vocab, config)

        def add_metadata(writer: gguf.GGUFWriter) -> None:
            writer.add_name(name)
            writer.add_file_type(FILE_TYPES[out_type])
            llama.add_hparams(writer, hp)
            if isinstance(vocab, spm.SpmVocab):
                spm.add_vocab(writer, vocab)
            else:
                bpe.add_vocab(writer, vocab)

        arch = spec.gguf_architecture
        size = write_gguf(output, arch, plan, progress, add_metadata)
        return _result(output, config, arch, out_type, plan, size, hp, None)

    return convert


def _load_decoder_vocab(
    model_dir: Path, n_vocab: int, config: dict[str, Any]
) -> bpe.BpeVocab | spm.SpmVocab:
    """A SentencePiece-style tokenizer.json becomes llama.cpp's `llama` tokenizer; any
    other goes to the byte-level BPE (`gpt2`) path, which refuses what it cannot convert."""
    if spm.is_sentencepiece_style(model_dir):
        return spm.load_spm_vocab(model_dir, n_vocab, config)
    return bpe.load_bpe_vocab(model_dir, n_vocab, config)


def _result(
    output: Path,
    config: dict[str, Any],
    architecture: str,
    out_type: OutType,
    plan: list[PlannedTensor],
    size: int,
    hp: TransformerShape,
    pooling: str | None,
) -> ConversionResult:
    return ConversionResult(
        output=output,
        source_architecture=architecture_of(config),
        architecture=architecture,
        file_type=out_type,
        tensor_count=len(plan),
        parameter_count=sum(math.prod(t.shape) for t in plan),
        context_length=hp.context_length,
        embedding_length=hp.n_embd,
        block_count=hp.n_layer,
        vocab_size=hp.n_vocab,
        pooling=pooling,
        size=size,
    )


_CONVERTERS: dict[str, _Converter] = {
    **dict.fromkeys(bert.HF_ARCHITECTURES, _convert_bert),
    **{arch: _convert_decoder(spec) for arch, spec in _DECODERS.items()},
}
"""One converter per Hugging Face model class named in config.json."""


def _plan_tensors(
    checkpoint: Checkpoint, hp: bert.BertHParams, out_type: OutType
) -> list[PlannedTensor]:
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
) -> PlannedTensor:
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
    keep_f32 = bert.tensor_kind(gguf_name) in bert.FLOAT32_ONLY
    dtype = storage_dtype(shape, out_type, keep_f32 or gguf_name.endswith("_norm.weight"))
    return PlannedTensor(gguf_name, shape, dtype, _reader(checkpoint, hf_name, shape))


def _reader(checkpoint: Checkpoint, hf_name: str, shape: tuple[int, ...]) -> Callable[[], Any]:
    """Read a tensor cut to `shape` (position embeddings beyond the context are dropped)."""

    def read() -> npt.NDArray[Any]:
        return checkpoint.load(hf_name)[tuple(slice(0, n) for n in shape)]

    return read


def _add_metadata(
    writer: gguf.GGUFWriter,
    hp: bert.BertHParams,
    vocab: WordPieceVocab,
    out_type: OutType,
    name: str,
) -> None:
    """General, architecture and tokenizer key/values, as llama.cpp's BERT loader reads them."""
    writer.add_name(name)
    writer.add_file_type(FILE_TYPES[out_type])
    add_shape(writer, hp)
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
