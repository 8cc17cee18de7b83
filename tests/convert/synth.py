"""Synthesised inputs: our own Safetensors writer and a tiny random BERT model directory.

Writing the format independently of `ollamapy.convert.safetensors` means the reader is
tested against bytes it did not produce, and the tiny model makes conversion tests run in
milliseconds while exercising every tensor kind the real model has.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DTYPE_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64"}

SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "cat", "sat", "on", "mat", "##s", "hello", "world", ",", ".", "!", "un"]
WORDS += ["##believ", "##able", "dog", "##gy", "a", "##n"]
VOCAB = SPECIALS + WORDS


def safetensors_bytes(
    tensors: dict[str, npt.NDArray[Any]], bf16: frozenset[str] = frozenset()
) -> bytes:
    """Serialise tensors; names in `bf16` are stored as bfloat16 (truncated float32)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    offset = 0
    for name, array in tensors.items():
        if name in bf16:
            raw = (np.asarray(array, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
            dtype = "BF16"
        else:
            raw = np.ascontiguousarray(array).tobytes()
            dtype = DTYPE_NAMES[array.dtype]
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs)


def write_safetensors(path: Path, tensors: dict[str, npt.NDArray[Any]], **kw: Any) -> None:
    path.write_bytes(safetensors_bytes(tensors, **kw))


def tiny_bert_tensors(
    n_layer: int = 2, n_embd: int = 32, n_ff: int = 64, n_positions: int = 64, seed: int = 0
) -> dict[str, npt.NDArray[np.float32]]:
    """Random BertModel weights in Hugging Face naming, including pooler and position_ids."""
    rng = np.random.default_rng(seed)

    def mat(*shape: int, scale: float = 0.2) -> npt.NDArray[np.float32]:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def norm(prefix: str) -> dict[str, npt.NDArray[np.float32]]:
        return {
            f"{prefix}.weight": 1 + mat(n_embd, scale=0.1),
            f"{prefix}.bias": mat(n_embd, scale=0.1),
        }

    t: dict[str, npt.NDArray[Any]] = {
        "embeddings.word_embeddings.weight": mat(len(VOCAB), n_embd, scale=1.0),
        "embeddings.position_embeddings.weight": mat(n_positions, n_embd, scale=0.5),
        "embeddings.token_type_embeddings.weight": mat(2, n_embd, scale=0.5),
        **norm("embeddings.LayerNorm"),
        "embeddings.position_ids": np.arange(n_positions, dtype=np.int64)[None, :],
        "pooler.dense.weight": mat(n_embd, n_embd),
        "pooler.dense.bias": mat(n_embd),
    }
    for i in range(n_layer):
        p = f"encoder.layer.{i}."
        for sub in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            t[p + sub + ".weight"], t[p + sub + ".bias"] = mat(n_embd, n_embd), mat(n_embd)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = (
            mat(n_ff, n_embd),
            mat(n_ff),
        )
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = mat(n_embd, n_ff), mat(n_embd)
        t |= norm(p + "attention.output.LayerNorm") | norm(p + "output.LayerNorm")
    return t


def tiny_config(
    n_layer: int = 2, n_embd: int = 32, n_ff: int = 64, n_positions: int = 64
) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_size": n_embd,
        "intermediate_size": n_ff,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": n_positions,
        "num_attention_heads": 4,
        "num_hidden_layers": n_layer,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "vocab_size": len(VOCAB),
    }


def tokenizer_json() -> dict[str, Any]:
    """A minimal `tokenizers` WordPiece file with BERT's framing template."""
    return {
        "version": "1.0",
        "added_tokens": [
            {"id": VOCAB.index(s), "content": s, "special": True}
            for s in SPECIALS
            if s != "[unused0]"
        ],
        "normalizer": {"type": "BertNormalizer", "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "vocab": {tok: i for i, tok in enumerate(VOCAB)},
        },
    }


def make_tiny_bert(
    model_dir: Path,
    *,
    pooling: str | None = "mean",
    max_seq_length: int | None = 16,
    vocab_txt_only: bool = False,
    tensors: dict[str, npt.NDArray[Any]] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write a complete tiny sentence-transformers BERT directory and return it."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config or tiny_config()))
    write_safetensors(
        model_dir / "model.safetensors", tensors if tensors is not None else tiny_bert_tensors()
    )
    (model_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    if not vocab_txt_only:
        (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json()))
    (model_dir / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "unk_token": "[UNK]"})
    )
    roles = ("unk", "sep", "pad", "cls", "mask")
    special_map = {f"{role}_token": f"[{role.upper()}]" for role in roles}
    (model_dir / "special_tokens_map.json").write_text(json.dumps(special_map))
    if pooling is not None:
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ]
        (model_dir / "modules.json").write_text(json.dumps(modules))
        (model_dir / "1_Pooling").mkdir(exist_ok=True)
        flags = {
            "mean": "pooling_mode_mean_tokens",
            "cls": "pooling_mode_cls_token",
            "last": "pooling_mode_lasttoken",
        }
        pool_cfg = {
            "word_embedding_dimension": 32,
            **{f: f == flags[pooling] for f in flags.values()},
        }
        (model_dir / "1_Pooling" / "config.json").write_text(json.dumps(pool_cfg))
    if max_seq_length is not None:
        (model_dir / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": max_seq_length})
        )
    return model_dir
