"""Converting a tiny Hugging Face Phi-3 model: metadata, tensors (the fused QKV and gate/up
matrices above all) and errors (llama.cpp's tokens and logits against transformers' are in
test_decoders_match_transformers.py).

tests/testdata/tiny-phi3 and tiny_phi3_golden.json were written by scripts/make_tiny_phi3.py
with torch/transformers/tokenizers; the expected tensor contents below are sliced from the
checkpoint by hand, not by our converter's helpers.
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
    gguf_kv,
    gguf_tensors,
)
from tests.convert.synth import write_safetensors

PHI3 = TESTDATA / "tiny-phi3"
N_FF = 128
Q_ROWS, KV_ROWS = 4 * 16, 2 * 16


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """The golden model converted to f32 and f16 once for the module."""
    return convert_each({"tiny-phi3": PHI3}, tmp_path_factory.mktemp("phi3"))


def _gguf(converted: dict[tuple[str, str], Path], kind: str, name: str) -> np.ndarray[Any, Any]:
    return np.asarray(gguf_tensors(converted[("tiny-phi3", kind)])[name].data, dtype=np.float32)


def _source(name: str) -> np.ndarray[Any, Any]:
    return open_checkpoint(PHI3).load(name).astype(np.float32)


# --------------------------------------------------------------------------- metadata


def test_result_describes_the_model(tmp_path: Path) -> None:
    result = convert_model(PHI3, tmp_path / "m.gguf")
    assert (result.source_architecture, result.architecture) == ("Phi3ForCausalLM", "phi3")
    assert (result.context_length, result.embedding_length, result.block_count) == (256, 64, 2)
    assert (result.vocab_size, result.pooling, result.tensor_count) == (564, None, 1 + 6 * 2 + 2)


def test_hyper_parameters(converted: dict[tuple[str, str], Path]) -> None:
    kv = gguf_kv(converted[("tiny-phi3", "f16")])
    assert kv["general.architecture"] == "phi3"
    assert kv["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    f32_kv = gguf_kv(converted[("tiny-phi3", "f32")])
    assert f32_kv["general.file_type"] == gguf.LlamaFileType.ALL_F32
    want = {
        "vocab_size": 564,
        "context_length": 256,
        "embedding_length": 64,
        "block_count": 2,
        "feed_forward_length": N_FF,  # n_ff itself: llama.cpp loads ffn_up as 2 * n_ff rows
        "attention.head_count": 4,
        "attention.head_count_kv": 2,
        "rope.dimension_count": 16,
        "rope.freq_base": 10000.0,
    }
    assert {k: kv[f"phi3.{k}"] for k in want} == want
    assert kv["phi3.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert "phi3.attention.key_length" not in kv
    assert not any(".rope.scaling" in k or "sliding" in k for k in kv)


BLOCK: TensorTable = {
    "attn_norm.weight": ([64], "F32"),
    "attn_qkv.weight": ([64, Q_ROWS + 2 * KV_ROWS], "F16"),
    "attn_output.weight": ([Q_ROWS, 64], "F16"),
    "ffn_norm.weight": ([64], "F32"),
    "ffn_up.weight": ([64, 2 * N_FF], "F16"),
    "ffn_down.weight": ([N_FF, 64], "F16"),
}
"""One block's GGUF tensors (shapes as GGUF lists them: columns first)."""


def test_tensor_names_shapes_and_types(converted: dict[tuple[str, str], Path]) -> None:
    expected = {
        "token_embd.weight": ([64, 564], "F16"),
        "output_norm.weight": ([64], "F32"),
        "output.weight": ([64, 564], "F16"),
    }
    assert_tensor_table(converted, "tiny-phi3", expected, BLOCK)


# --------------------------------------------------------------------------- tensor contents


@pytest.mark.parametrize("block", [0, 1])
def test_fused_qkv_is_written_whole_in_q_k_v_order(
    converted: dict[tuple[str, str], Path], block: int
) -> None:
    """llama.cpp slices attn_qkv as Q (n_head * head_dim rows), then K, then V (each
    n_head_kv * head_dim rows), as transformers slices qkv_proj; no RoPE permutation
    (NEOX)."""
    source = _source(f"model.layers.{block}.self_attn.qkv_proj.weight")
    got = _gguf(converted, "f32", f"blk.{block}.attn_qkv.weight")
    np.testing.assert_array_equal(got, source)
    q, k, v = np.split(got, [Q_ROWS, Q_ROWS + KV_ROWS])
    assert (q.shape[0], k.shape[0], v.shape[0]) == (Q_ROWS, KV_ROWS, KV_ROWS)
    np.testing.assert_array_equal(k, source[Q_ROWS : Q_ROWS + KV_ROWS])


@pytest.mark.parametrize("block", [0, 1])
def test_fused_gate_up_is_written_whole_gate_first(
    converted: dict[tuple[str, str], Path], block: int
) -> None:
    """transformers applies SiLU to the first n_ff rows of gate_up_proj (the gate) and
    llama.cpp's ggml_swiglu to the first half of ffn_up: the same order, so no swap."""
    source = _source(f"model.layers.{block}.mlp.gate_up_proj.weight")
    for kind in ("f32", "f16"):
        got = _gguf(converted, kind, f"blk.{block}.ffn_up.weight")
        np.testing.assert_allclose(got[:N_FF], source[:N_FF], rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(got[N_FF:], source[N_FF:], rtol=1e-3, atol=1e-6)
    assert not np.allclose(source[:N_FF], source[N_FF:], atol=1e-2)  # a swap would show


def test_other_tensors_are_copied(converted: dict[tuple[str, str], Path]) -> None:
    for hf, name in [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
        ("model.layers.1.post_attention_layernorm.weight", "blk.1.ffn_norm.weight"),
        ("model.layers.1.self_attn.o_proj.weight", "blk.1.attn_output.weight"),
        ("model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ]:
        np.testing.assert_array_equal(_gguf(converted, "f32", name), _source(hf))


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_keeps_phi3_added_tokens(converted: dict[tuple[str, str], Path]) -> None:
    """llama.cpp sets Phi-3's rstrip flags itself (by general.name) and then looks up
    `<|endoftext|>`, so the added tokens must be in the vocabulary under their ids."""
    kv = gguf_kv(converted[("tiny-phi3", "f16")])
    tokens = kv["tokenizer.ggml.tokens"]
    assert kv["tokenizer.ggml.model"] == "llama"
    assert tokens[560:] == ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>"]
    assert {kv["tokenizer.ggml.token_type"][i] for i in range(560, 564)} == {gguf.TokenType.CONTROL}
    assert "phi3" in kv["general.name"]


# --------------------------------------------------------------------------- accepted variants


@pytest.mark.parametrize(
    ("window", "context", "expected"),
    [(None, 256, 256), (4096, 256, 256), (128, 256, 128), (2047, 4096, 2047)],
)
def test_context_stops_at_the_sliding_window(
    tmp_path: Path, window: int | None, context: int, expected: int
) -> None:
    """llama.cpp's phi3 graph disables the window: the converted context ends where
    transformers' mask would start to bite (Phi-3-mini-4k: 2047 of 4096)."""
    model_dir = copy_model(PHI3, tmp_path)
    config_change({"sliding_window": window, "max_position_embeddings": context})(model_dir)
    result = convert_model(model_dir, tmp_path / "m.gguf")
    assert result.architecture == "phi3"
    assert result.context_length == expected
    assert gguf_kv(result.output)["phi3.context_length"] == expected


def test_tied_embeddings_are_accepted(tmp_path: Path) -> None:
    """llama.cpp's phi3 loader falls back to the token embedding when output.weight is
    absent; a saved lm_head copy of a tied model is dropped."""
    model_dir = copy_model(PHI3, tmp_path)
    config_change({"tie_word_embeddings": True})(model_dir)
    result = convert_model(model_dir, tmp_path / "m.gguf")
    assert (result.architecture, result.tensor_count) == ("phi3", 1 + 6 * 2 + 1)
    assert "output.weight" not in gguf_tensors(result.output)


# --------------------------------------------------------------------------- errors


def _drop_tensor(name: str) -> Callable[[Path], None]:
    def drop(model_dir: Path) -> None:
        checkpoint = open_checkpoint(model_dir)
        tensors = {n: checkpoint.load(n).astype(np.float32) for n in checkpoint if n != name}
        write_safetensors(model_dir / "model.safetensors", tensors)

    return drop


def _rope(parameters: dict[str, Any]) -> Callable[[Path], None]:
    return config_change({"rope_parameters": {"rope_theta": 1e4} | parameters})


LONGROPE = {"rope_type": "longrope", "short_factor": [1.0] * 8, "long_factor": [2.0] * 8}

BAD_INPUTS: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "longrope",
        _rope(LONGROPE),
        r"unsupported rope_scaling type 'longrope': only no scaling can be converted "
        r"for Phi3ForCausalLM",
    ),
    (
        "legacy-su-rope-scaling",
        lambda d: _legacy_rope_scaling(d, {"type": "su", "short_factor": [1.0] * 8}),
        r"unsupported rope_scaling type 'su'",
    ),
    ("linear-rope", _rope({"rope_type": "linear", "factor": 2.0}), r"rope_scaling type 'linear'"),
    (
        "bad-window",
        config_change({"sliding_window": 0}),
        r"sliding_window must be a positive integer, not 0",
    ),
    (
        "partial-rotary",
        _rope({"rope_type": "default", "partial_rotary_factor": 0.5}),
        r"Phi-3 models with partial_rotary_factor 0.5 are not supported",
    ),
    (
        "legacy-partial-rotary",
        config_change({"rope_parameters": None, "partial_rotary_factor": 0.75}),
        r"partial_rotary_factor 0.75 are not supported",
    ),
    (
        "gelu",
        config_change({"hidden_act": "gelu"}),
        r"unsupported Phi-3 hidden_act 'gelu' \(llama.cpp's phi3 graph uses silu\)",
    ),
    (
        "head-dim-not-hidden-over-heads",
        config_change({"head_dim": 32}),
        r"Phi-3 models with head_dim 32 != hidden_size / num_attention_heads are not supported",
    ),
    (
        "kv-heads-mismatch",
        config_change({"num_key_value_heads": 4}),
        r"tensor 'model.layers.0.self_attn.qkv_proj.weight' has shape \[128, 64\], "
        r"expected \[192, 64\]",
    ),
    (
        "missing-fused-gate-up",
        _drop_tensor("model.layers.1.mlp.gate_up_proj.weight"),
        r"checkpoint is missing 1 tensor\(s\), e.g. 'blk.1.ffn_up.weight'",
    ),
    (
        "missing-fused-qkv",
        _drop_tensor("model.layers.0.self_attn.qkv_proj.weight"),
        r"checkpoint is missing 1 tensor\(s\), e.g. 'blk.0.attn_qkv.weight'",
    ),
    (
        "split-llama-style-projections",
        lambda d: _split_gate_up(d),
        r"unexpected tensor 'model.layers.0.mlp.gate_proj.weight' in a Phi3ForCausalLM",
    ),
]
"""Each breaks the golden model in one way."""


def _legacy_rope_scaling(model_dir: Path, scaling: dict[str, Any]) -> None:
    """A transformers 4 config.json: rope_scaling and rope_theta on top."""
    config = json.loads((model_dir / "config.json").read_text())
    del config["rope_parameters"]
    config |= {"rope_scaling": scaling, "rope_theta": 10000.0}
    (model_dir / "config.json").write_text(json.dumps(config))


def _split_gate_up(model_dir: Path) -> None:
    """Llama's separate gate_proj/up_proj names, which a Phi-3 checkpoint never has."""
    checkpoint = open_checkpoint(model_dir)
    tensors = {n: checkpoint.load(n).astype(np.float32) for n in checkpoint}
    fused = tensors.pop("model.layers.0.mlp.gate_up_proj.weight")
    tensors["model.layers.0.mlp.gate_proj.weight"] = fused[:N_FF]
    tensors["model.layers.0.mlp.up_proj.weight"] = fused[N_FF:]
    write_safetensors(model_dir / "model.safetensors", tensors)


@pytest.mark.parametrize(
    ("break_it", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, break_it: Callable[[Path], None], message: str
) -> None:
    assert_refused(tmp_path, PHI3, break_it, message)
