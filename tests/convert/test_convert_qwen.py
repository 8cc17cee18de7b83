"""Converting tiny Hugging Face Qwen2 and Qwen3 models: metadata, tensors,
tokenizer metadata and errors (llama.cpp's tokens and logits against transformers' are in
test_decoders_match_transformers.py).

tests/testdata/tiny-qwen2, tiny-qwen3 and tiny_qwen_golden.json were written by
scripts/make_tiny_qwen.py with torch/transformers/tokenizers; nothing here derives
expectations from our own converter.
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
from ollamapy.convert.bpe import QWEN2_SPLIT
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

QWEN2 = TESTDATA / "tiny-qwen2"
QWEN3 = TESTDATA / "tiny-qwen3"
MODELS = {"tiny-qwen2": QWEN2, "tiny-qwen3": QWEN3}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Both golden models converted to f32 and f16 once for the module."""
    return convert_each(MODELS, tmp_path_factory.mktemp("qwen"))


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("name", "source", "arch", "tensors"),
    [
        ("tiny-qwen2", "Qwen2ForCausalLM", "qwen2", 1 + 12 * 2 + 1),  # tied: no output
        ("tiny-qwen3", "Qwen3ForCausalLM", "qwen3", 1 + 11 * 2 + 2),
    ],
)
def test_result_describes_the_model(
    tmp_path: Path, name: str, source: str, arch: str, tensors: int
) -> None:
    result = convert_model(MODELS[name], tmp_path / "m.gguf")
    assert (result.source_architecture, result.architecture) == (source, arch)
    assert (result.context_length, result.embedding_length, result.block_count) == (256, 64, 2)
    assert (result.vocab_size, result.pooling, result.tensor_count) == (448, None, tensors)


@pytest.mark.parametrize(
    ("name", "arch", "head_keys"),
    [
        ("tiny-qwen2", "qwen2", {"rope.dimension_count": 16}),
        (
            "tiny-qwen3",
            "qwen3",
            {"rope.dimension_count": 32, "attention.key_length": 32, "attention.value_length": 32},
        ),
    ],
)
def test_hyper_parameters(
    converted: dict[tuple[str, str], Path], name: str, arch: str, head_keys: dict[str, int]
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
        "vocab_size": 448,
        "rope.freq_base": 1000000.0,
    } | head_keys
    assert {k: kv[f"{arch}.{k}"] for k in want} == want
    assert kv[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    if name == "tiny-qwen2":
        assert f"{arch}.attention.key_length" not in kv
    assert not any(".rope.scaling" in k for k in kv)


QWEN2_BLOCK = decoder_block(q=64, kv=32) | {
    "attn_q.bias": ([64], "F32"),
    "attn_k.bias": ([32], "F32"),
    "attn_v.bias": ([32], "F32"),
}
QWEN3_BLOCK = decoder_block(q=128, kv=64) | {
    "attn_q_norm.weight": ([32], "F32"),
    "attn_k_norm.weight": ([32], "F32"),
}


@pytest.mark.parametrize(
    ("name", "block", "tail"),
    [
        ("tiny-qwen2", QWEN2_BLOCK, {}),
        ("tiny-qwen3", QWEN3_BLOCK, {"output.weight": ([64, 448], "F16")}),
    ],
)
def test_tensor_names_shapes_and_types(
    converted: dict[tuple[str, str], Path],
    name: str,
    block: TensorTable,
    tail: TensorTable,
) -> None:
    top = {"token_embd.weight": ([64, 448], "F16"), "output_norm.weight": ([64], "F32")}
    assert_tensor_table(converted, name, top | tail, block)


@pytest.mark.parametrize(
    ("name", "hf", "gguf_name"),
    [
        ("tiny-qwen2", "self_attn.q_proj.weight", "attn_q.weight"),
        ("tiny-qwen2", "self_attn.k_proj.weight", "attn_k.weight"),
        ("tiny-qwen2", "self_attn.q_proj.bias", "attn_q.bias"),
        ("tiny-qwen2", "self_attn.k_proj.bias", "attn_k.bias"),
        ("tiny-qwen3", "self_attn.q_proj.weight", "attn_q.weight"),
        ("tiny-qwen3", "self_attn.q_norm.weight", "attn_q_norm.weight"),
        ("tiny-qwen3", "self_attn.k_norm.weight", "attn_k_norm.weight"),
    ],
)
def test_q_and_k_are_not_permuted_for_neox_rope(
    converted: dict[tuple[str, str], Path], name: str, hf: str, gguf_name: str
) -> None:
    source = open_checkpoint(MODELS[name]).load(f"model.layers.1.{hf}").astype(np.float32)
    got = np.asarray(gguf_tensors(converted[(name, "f32")])[f"blk.1.{gguf_name}"].data)
    np.testing.assert_array_equal(got, source)


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("name", list(MODELS))
def test_tokenizer_metadata(converted: dict[tuple[str, str], Path], name: str) -> None:
    kv = gguf_kv(converted[(name, "f16")])
    source = json.loads((MODELS[name] / "tokenizer.json").read_text())
    assert source["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == QWEN2_SPLIT
    tokens = kv["tokenizer.ggml.tokens"]
    assert (kv["tokenizer.ggml.model"], kv["tokenizer.ggml.pre"]) == ("gpt2", "qwen2")
    assert tokens[384] == "[[tool]]"
    assert tokens[385:] == [f"[PAD{i}]" for i in range(385, 448)]
    assert kv["tokenizer.ggml.token_type"][385:] == [gguf.TokenType.UNUSED] * 63
    assert kv["tokenizer.ggml.merges"] == [" ".join(m) for m in source["model"]["merges"]]
    assert tokens[kv["tokenizer.ggml.bos_token_id"]] == "<|endoftext|>"  # from config.json
    assert tokens[kv["tokenizer.ggml.eos_token_id"]] == "<|im_end|>"
    assert tokens[kv["tokenizer.ggml.padding_token_id"]] == "<|endoftext|>"
    assert kv["tokenizer.ggml.add_bos_token"] is False
    assert kv["tokenizer.ggml.add_eos_token"] is False


# --------------------------------------------------------------------------- errors


def _split(data: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = data["pre_tokenizer"]["pretokenizers"][0]
    return step


def _rewrite_checkpoint(
    edit: Callable[[dict[str, np.ndarray[Any, Any]]], dict[str, np.ndarray[Any, Any]]],
) -> Callable[[Path], None]:
    """Rewrite model.safetensors (as float32) with `edit` applied to its tensors."""

    def apply(model_dir: Path) -> None:
        checkpoint = open_checkpoint(model_dir)
        tensors = {name: checkpoint.load(name).astype(np.float32) for name in checkpoint}
        write_safetensors(model_dir / "model.safetensors", edit(tensors))

    return apply


def _without(suffix: str) -> Callable[[Path], None]:
    return _rewrite_checkpoint(lambda t: {k: v for k, v in t.items() if not k.endswith(suffix)})


def _with(name: str, shape: tuple[int, ...]) -> Callable[[Path], None]:
    return _rewrite_checkpoint(lambda t: t | {name: np.zeros(shape, dtype=np.float32)})


BAD_INPUTS: list[tuple[str, Path, Callable[[Path], None], str]] = [
    (
        "moe",
        QWEN2,
        config_change({"architectures": ["Qwen2MoeForCausalLM"]}),
        r"unsupported architecture 'Qwen2MoeForCausalLM'.*Qwen2ForCausalLM, Qwen3ForCausalLM",
    ),
    (
        "sliding-window-layer-types",
        QWEN2,
        config_change({"layer_types": ["full_attention", "sliding_attention"]}),
        r"Qwen2 models with sliding-window attention in use are not supported",
    ),
    (
        "sliding-window-transformers4",
        QWEN3,
        config_change({"layer_types": None, "use_sliding_window": True, "max_window_layers": 1}),
        r"Qwen3 models with sliding-window attention in use",
    ),
    (
        "rope-yarn",
        QWEN2,
        config_change({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}}),
        r"unsupported rope_scaling type 'yarn': only 'linear' can be converted for Qwen2",
    ),
    (
        "rope-llama3",
        QWEN3,
        config_change(
            {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 1e6}}
        ),
        r"unsupported rope_scaling type 'llama3'",
    ),
    (
        "qwen3-attention-bias",
        QWEN3,
        config_change({"attention_bias": True}),
        r"Qwen3 models with attention_bias are not supported",
    ),
    (
        "qwen2-head-dim",
        QWEN2,
        config_change({"head_dim": 32}),
        r"Qwen2 models with head_dim 32 != hidden_size / num_attention_heads",
    ),
    (
        "qwen2-missing-bias",
        QWEN2,
        _without("k_proj.bias"),
        r"missing 2 tensor\(s\), e.g. 'blk.0.attn_k.bias'",
    ),
    (
        "qwen3-missing-norm",
        QWEN3,
        _without("q_norm.weight"),
        r"missing 2 tensor\(s\), e.g. 'blk.0.attn_q_norm.weight'",
    ),
    (
        "qwen3-unexpected-bias",
        QWEN3,
        _with("model.layers.0.self_attn.o_proj.bias", (64,)),
        r"unexpected tensor 'model.layers.0.self_attn.o_proj.bias' in a Qwen3ForCausalLM",
    ),
    (
        "split-regex-llama3",
        QWEN2,
        tokenizer_change(
            lambda t: _split(t)["pattern"].update(
                Regex=QWEN2_SPLIT.replace(r"\p{N}|", r"\p{N}{1,3}|")
            )
        ),
        r"ignore_merges=False differs from what llama.cpp does for the 'llama-bpe'",
    ),
    (
        "split-regex-altered",
        QWEN2,
        tokenizer_change(lambda t: _split(t)["pattern"].update(Regex=QWEN2_SPLIT + "|x")),
        r"unsupported tokenizer pre-tokenizer",
    ),
    (
        "normalizer-nfkc",
        QWEN2,
        tokenizer_change(lambda t: t.update(normalizer={"type": "NFKC"})),
        r"unsupported normalizer 'NFKC' for 'qwen2'",
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


def test_sliding_window_configured_but_unused_is_accepted(tmp_path: Path) -> None:
    """Real Qwen2.5 configs carry sliding_window / max_window_layers with the window off."""
    model_dir = copy_model(QWEN2, tmp_path)
    edit_config(
        model_dir,
        {
            "layer_types": None,
            "sliding_window": 4096,
            "max_window_layers": 2,
            "use_sliding_window": True,
        },
    )
    assert convert_model(model_dir, tmp_path / "m.gguf").architecture == "qwen2"
