"""Converting tiny Hugging Face Mistral and Gemma (1) models: metadata, tensors, tokenizer
metadata and errors (llama.cpp's tokens and logits against transformers' are in
test_decoders_match_transformers.py).

tests/testdata/tiny-mistral, tiny-gemma and tiny_mistral_gemma_golden.json were written by
scripts/make_tiny_mistral_gemma.py with torch/transformers/tokenizers; the expected tensor
contents below are derived from the checkpoints by hand, not by our converter's helpers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from ollamapy.convert import convert_model
from ollamapy.convert.safetensors import open_checkpoint
from tests.convert.golden_models import (
    TESTDATA,
    TensorTable,
    assert_refused,
    assert_tensor_table,
    config_change,
    convert_each,
    copy_model,
    decoder_block,
    edit_config,
    gguf_kv,
    gguf_tensors,
    tokenizer_change,
)
from tests.convert.synth import write_safetensors

MISTRAL = TESTDATA / "tiny-mistral"
GEMMA = TESTDATA / "tiny-gemma"
MODELS = {"tiny-mistral": MISTRAL, "tiny-gemma": GEMMA}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Both golden models converted to f32 and f16 once for the module."""
    return convert_each(MODELS, tmp_path_factory.mktemp("mistral-gemma"))


def _f32(path: Path, name: str) -> np.ndarray[Any, Any]:
    return np.asarray(gguf_tensors(path)[name].data)


def _source(model: Path, name: str) -> np.ndarray[Any, Any]:
    return open_checkpoint(model).load(name).astype(np.float32)


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("name", "source", "arch", "vocab", "tensors"),
    [
        ("tiny-mistral", "MistralForCausalLM", "llama", 560, 1 + 9 * 2 + 2),
        ("tiny-gemma", "GemmaForCausalLM", "gemma", 562, 1 + 9 * 2 + 1),  # tied: no output
    ],
)
def test_result_describes_the_model(
    tmp_path: Path, name: str, source: str, arch: str, vocab: int, tensors: int
) -> None:
    result = convert_model(MODELS[name], tmp_path / "m.gguf")
    assert (result.source_architecture, result.architecture) == (source, arch)
    assert (result.context_length, result.embedding_length, result.block_count) == (256, 64, 2)
    assert (result.vocab_size, result.pooling, result.tensor_count) == (vocab, None, tensors)


@pytest.mark.parametrize(
    ("name", "arch", "extra"),
    [
        ("tiny-mistral", "llama", {"vocab_size": 560, "rope.dimension_count": 16}),
        (
            "tiny-gemma",
            "gemma",
            {
                "vocab_size": 562,
                "rope.dimension_count": 32,
                "attention.key_length": 32,
                "attention.value_length": 32,
            },
        ),
    ],
)
def test_hyper_parameters(
    converted: dict[tuple[str, str], Path], name: str, arch: str, extra: dict[str, int]
) -> None:
    kv = gguf_kv(converted[(name, "f16")])
    assert kv["general.architecture"] == arch
    assert kv["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    assert gguf_kv(converted[(name, "f32")])["general.file_type"] == gguf.LlamaFileType.ALL_F32
    want = {
        "context_length": 256,
        "embedding_length": 64,
        "block_count": 2,
        "feed_forward_length": 128,
        "attention.head_count": 4,
        "attention.head_count_kv": 2,
        "rope.freq_base": 10000.0,
    } | extra
    assert {k: kv[f"{arch}.{k}"] for k in want} == want
    eps = {"tiny-mistral": 1e-5, "tiny-gemma": 1e-6}[name]
    assert kv[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(eps)
    if name == "tiny-mistral":
        assert f"{arch}.attention.key_length" not in kv
    assert not any(".rope.scaling" in k or "sliding" in k for k in kv)


@pytest.mark.parametrize(
    ("name", "vocab", "block", "tail"),
    [
        ("tiny-mistral", 560, decoder_block(64, 32), {"output.weight": ([64, 560], "F16")}),
        ("tiny-gemma", 562, decoder_block(128, 64), {}),
    ],
)
def test_tensor_names_shapes_and_types(
    converted: dict[tuple[str, str], Path],
    name: str,
    vocab: int,
    block: TensorTable,
    tail: TensorTable,
) -> None:
    top = {"token_embd.weight": ([64, vocab], "F16"), "output_norm.weight": ([64], "F32")}
    assert_tensor_table(converted, name, top | tail, block)


# --------------------------------------------------------------------------- tensor contents


@pytest.mark.parametrize(
    ("hf", "gguf_name", "heads"), [("q_proj", "attn_q", 4), ("k_proj", "attn_k", 2)]
)
def test_mistral_q_and_k_rows_are_permuted_for_normal_rope(
    converted: dict[tuple[str, str], Path], hf: str, gguf_name: str, heads: int
) -> None:
    """llama.cpp's `llama` graph rotates adjacent rows (2j, 2j+1); HF rotates j with
    j + head_dim/2. So row h*d + 2j + k of the GGUF is row h*d + k*d/2 + j of HF's."""
    source = _source(MISTRAL, f"model.layers.1.self_attn.{hf}.weight")
    got = _f32(converted[("tiny-mistral", "f32")], f"blk.1.{gguf_name}.weight")
    d = 16
    for h in range(heads):
        for j in range(d // 2):
            for k in range(2):
                np.testing.assert_array_equal(
                    got[h * d + 2 * j + k], source[h * d + k * d // 2 + j]
                )
    assert not np.array_equal(got, source)


def test_mistral_other_tensors_are_copied(converted: dict[tuple[str, str], Path]) -> None:
    path = converted[("tiny-mistral", "f32")]
    for hf, name in [
        ("model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight"),
        ("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ]:
        np.testing.assert_array_equal(_f32(path, name), _source(MISTRAL, hf))


@pytest.mark.parametrize(
    ("hf", "gguf_name"),
    [
        ("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
        ("model.layers.1.post_attention_layernorm.weight", "blk.1.ffn_norm.weight"),
        ("model.norm.weight", "output_norm.weight"),
    ],
)
def test_gemma_norm_weights_are_written_plus_one(
    converted: dict[tuple[str, str], Path], hf: str, gguf_name: str
) -> None:
    """HF's Gemma RMSNorm scales by (1 + weight), llama.cpp's by the weight."""
    source = _source(GEMMA, hf)
    for kind in ("f32", "f16"):
        got = _f32(converted[("tiny-gemma", kind)], gguf_name)
        np.testing.assert_array_equal(got, source + np.float32(1.0))
    assert np.abs(source).max() > 0.1  # randomised: a forgotten +1 would be visible


@pytest.mark.parametrize(
    ("hf", "gguf_name"),
    [
        ("model.embed_tokens.weight", "token_embd.weight"),  # sqrt(n_embd) is in the graph
        ("model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight"),  # NEOX RoPE
        ("model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight"),
    ],
)
def test_gemma_embedding_and_q_k_are_unchanged(
    converted: dict[tuple[str, str], Path], hf: str, gguf_name: str
) -> None:
    got = _f32(converted[("tiny-gemma", "f32")], gguf_name)
    np.testing.assert_array_equal(got, _source(GEMMA, hf))


# --------------------------------------------------------------------------- tokenizer


def test_mistral_tokenizer_is_legacy_sentencepiece(converted: dict[tuple[str, str], Path]) -> None:
    kv = gguf_kv(converted[("tiny-mistral", "f16")])
    tokens = kv["tokenizer.ggml.tokens"]
    assert kv["tokenizer.ggml.model"] == "llama"
    assert kv["tokenizer.ggml.add_space_prefix"] is True
    assert [tokens[kv[f"tokenizer.ggml.{r}_token_id"]] for r in ("bos", "eos", "unknown")] == [
        "<s>",
        "</s>",
        "<unk>",
    ]


def test_gemma_tokenizer_has_no_space_prefix(converted: dict[tuple[str, str], Path]) -> None:
    kv = gguf_kv(converted[("tiny-gemma", "f16")])
    tokens = kv["tokenizer.ggml.tokens"]
    assert kv["tokenizer.ggml.model"] == "llama"
    assert kv["tokenizer.ggml.add_space_prefix"] is False
    assert tokens[:4] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    roles = ("padding", "eos", "bos", "unknown")
    assert [kv[f"tokenizer.ggml.{r}_token_id"] for r in roles] == [0, 1, 2, 3]
    assert kv["tokenizer.ggml.add_bos_token"] is True
    assert kv["tokenizer.ggml.add_eos_token"] is False
    types = kv["tokenizer.ggml.token_type"]
    assert types[tokens.index("<0x41>")] == gguf.TokenType.BYTE
    assert types[tokens.index("<start_of_turn>")] == gguf.TokenType.CONTROL


# --------------------------------------------------------------------------- accepted variants


@pytest.mark.parametrize(
    ("window", "context", "expected"),
    [(None, 256, 256), (256, 256, 256), (4096, 256, 256), (128, 256, 128), (4096, 32768, 4096)],
)
def test_mistral_context_stops_at_its_sliding_window(
    tmp_path: Path, window: int | None, context: int, expected: int
) -> None:
    """llama.cpp's llama graph has no window: the converted context ends where transformers'
    mask would start to bite (Mistral 7B v0.1: 4096 of 32768), so the two always agree."""
    model_dir = copy_model(MISTRAL, tmp_path)
    edit_config(model_dir, {"sliding_window": window, "max_position_embeddings": context})
    result = convert_model(model_dir, tmp_path / "m.gguf")
    assert result.architecture == "llama"
    assert result.context_length == expected
    assert gguf_kv(result.output)["llama.context_length"] == expected


def test_gemma_legacy_gelu_and_absent_tie_flag_are_accepted(tmp_path: Path) -> None:
    """transformers reads Gemma's legacy `hidden_act: gelu` as the tanh approximation, and
    GemmaConfig ties embeddings by default; a saved `lm_head` copy is dropped."""
    model_dir = copy_model(GEMMA, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    del config["tie_word_embeddings"]
    (model_dir / "config.json").write_text(json.dumps(config | {"hidden_act": "gelu"}))
    checkpoint = open_checkpoint(model_dir)
    tensors = {name: checkpoint.load(name).astype(np.float32) for name in checkpoint}
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    write_safetensors(model_dir / "model.safetensors", tensors)
    result = convert_model(model_dir, tmp_path / "m.gguf")
    assert (result.architecture, result.tensor_count) == ("gemma", 1 + 9 * 2 + 1)
    assert "output.weight" not in gguf_tensors(result.output)


# --------------------------------------------------------------------------- errors


METASPACE = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}

BAD_INPUTS: list[tuple[str, Path, Callable[[Path], None], str]] = [
    (
        "mistral-bad-window",
        MISTRAL,
        config_change({"sliding_window": "4096"}),
        r"sliding_window must be a positive integer, not '4096'",
    ),
    (
        "mistral-layer-types",
        MISTRAL,
        config_change({"layer_types": ["full_attention", "sliding_attention"]}),
        r"Mistral models with sliding-window attention in use are not supported",
    ),
    (
        "mistral-gelu",
        MISTRAL,
        config_change({"hidden_act": "gelu"}),
        r"unsupported Mistral hidden_act 'gelu' \(llama.cpp's llama graph uses silu\)",
    ),
    (
        "mistral-rope-yarn",
        MISTRAL,
        config_change({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}),
        r"unsupported rope_scaling type 'yarn'.*MistralForCausalLM",
    ),
    (
        "gemma-untied",
        GEMMA,
        config_change({"tie_word_embeddings": False}),
        r"Gemma models with tie_word_embeddings false are not supported \(llama.cpp's gemma "
        r"graph reuses the token embedding as output\)",
    ),
    (
        "gemma-silu",
        GEMMA,
        config_change({"hidden_act": "silu"}),
        r"unsupported Gemma hidden_act 'silu' \(llama.cpp's gemma graph uses gelu_pytorch_tanh\)",
    ),
    (
        "gemma-attention-bias",
        GEMMA,
        config_change({"attention_bias": True}),
        r"Gemma models with attention_bias are not supported",
    ),
    (
        "gemma-rope-llama3",
        GEMMA,
        config_change(
            {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 1e4}}
        ),
        r"unsupported rope_scaling type 'llama3': only 'linear' can be converted for Gemma",
    ),
    (
        "gemma-head-dim-mismatch",
        GEMMA,
        config_change({"head_dim": 16}),
        r"tensor 'model.layers.0.self_attn.q_proj.weight' has shape \[128, 64\], expected",
    ),
    (
        "gemma-metaspace",
        GEMMA,
        tokenizer_change(lambda t: t.update(normalizer=None, pre_tokenizer=METASPACE)),
        r"the Metaspace pre-tokenizer is not supported",
    ),
]
"""Each breaks one golden model in one way."""


@pytest.mark.parametrize(
    ("model", "break_it", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, model: Path, break_it: Callable[[Path], None], message: str
) -> None:
    assert_refused(tmp_path, model, break_it, message)
