"""Converting tiny Hugging Face Llama models: metadata, tensors, tokenizer metadata
and errors (llama.cpp's tokens and logits against transformers' are in
test_decoders_match_transformers.py).

The model directories and `tiny_llama_golden.json` under tests/testdata were written by
scripts/make_tiny_llama.py with torch/transformers/tokenizers (see the golden file's
`command`); nothing here derives expectations from our own converter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from ollamapy.convert import ConversionResult, convert_model
from ollamapy.convert.llama import RopeScaling, interleave_rope_rows, llama3_rope_factors
from ollamapy.errors import BadRequestError
from tests.convert.golden_models import (
    TESTDATA,
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

UNTIED = TESTDATA / "tiny-llama"
TIED = TESTDATA / "tiny-llama-tied"
MODELS = {"tiny-llama": UNTIED, "tiny-llama-tied": TIED}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every golden model converted to f32 and f16 once for the module."""
    return convert_each(MODELS, tmp_path_factory.mktemp("llama"))


# --------------------------------------------------------------------------- metadata


def test_result_describes_the_model(tmp_path: Path) -> None:
    result = convert_model(UNTIED, tmp_path / "m.gguf")
    assert isinstance(result, ConversionResult)
    assert (result.source_architecture, result.architecture) == ("LlamaForCausalLM", "llama")
    assert (result.context_length, result.embedding_length, result.block_count) == (256, 64, 2)
    assert (result.vocab_size, result.pooling, result.file_type) == (385, None, "f16")
    assert result.tensor_count == 1 + 9 * 2 + 2  # embedding, 9 per block, norm + output


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "tiny-llama",
            {"llama.context_length": 256, "llama.rope.freq_base": 10000.0},
        ),
        (
            "tiny-llama-tied",
            {"llama.context_length": 128, "llama.rope.freq_base": 500000.0},
        ),
    ],
)
def test_hyper_parameters(
    converted: dict[tuple[str, str], Path], name: str, expected: dict[str, Any]
) -> None:
    kv = gguf_kv(converted[(name, "f16")])
    assert kv["general.architecture"] == "llama"
    assert kv["general.name"] == name
    assert kv["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    assert gguf_kv(converted[(name, "f32")])["general.file_type"] == gguf.LlamaFileType.ALL_F32
    common = {
        "llama.embedding_length": 64,
        "llama.block_count": 2,
        "llama.feed_forward_length": 128,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 16,
        "llama.vocab_size": 385,
    }
    assert {k: kv[k] for k in [*common, *expected]} == common | expected
    assert kv["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert "llama.rope.scaling.type" not in kv  # llama3 scaling travels as rope_freqs


def test_tensor_names_shapes_and_types(converted: dict[tuple[str, str], Path]) -> None:
    top = {
        "token_embd.weight": ([64, 385], "F16"),
        "output_norm.weight": ([64], "F32"),
        "output.weight": ([64, 385], "F16"),
    }
    # 4 query heads and 2 KV heads of 16: attn_k and attn_v have 32 rows.
    assert_tensor_table(converted, "tiny-llama", top, decoder_block(q=64, kv=32))


def test_tied_model_has_no_output_matrix_and_carries_rope_freqs(
    converted: dict[tuple[str, str], Path],
) -> None:
    tensors = gguf_tensors(converted[("tiny-llama-tied", "f16")])
    assert "output.weight" not in tensors
    freqs = tensors["rope_freqs.weight"]
    assert (freqs.shape.tolist(), freqs.tensor_type.name) == ([8], "F32")
    config = json.loads((TIED / "config.json").read_text())["rope_parameters"]
    scaling = RopeScaling(
        "llama3",
        config["factor"],
        config["low_freq_factor"],
        config["high_freq_factor"],
        config["original_max_position_embeddings"],
    )
    want = llama3_rope_factors(config["rope_theta"], 16, scaling)
    np.testing.assert_array_equal(np.asarray(freqs.data), want)


def test_weights_are_the_checkpoint_with_q_and_k_rows_interleaved(
    converted: dict[tuple[str, str], Path],
) -> None:
    from ollamapy.convert.safetensors import open_checkpoint

    checkpoint = open_checkpoint(UNTIED)
    tensors = gguf_tensors(converted[("tiny-llama", "f32")])
    hf = "model.layers.1.self_attn."
    q = np.asarray(tensors["blk.1.attn_q.weight"].data)
    k = np.asarray(tensors["blk.1.attn_k.weight"].data)
    v = np.asarray(tensors["blk.1.attn_v.weight"].data)
    np.testing.assert_array_equal(q, interleave_rope_rows(checkpoint.load(hf + "q_proj.weight"), 4))
    np.testing.assert_array_equal(k, interleave_rope_rows(checkpoint.load(hf + "k_proj.weight"), 2))
    np.testing.assert_array_equal(v, checkpoint.load(hf + "v_proj.weight"))


def test_interleave_pairs_each_row_with_its_rotate_half_partner() -> None:
    # one head of 8 rows: HF rotates (0,4), (1,5), (2,6), (3,7); llama.cpp wants them adjacent
    rows = np.arange(16, dtype=np.float32).reshape(16, 1)
    out = interleave_rope_rows(rows, 2)[:, 0].astype(int).tolist()
    assert out == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]


def test_llama3_rope_factors_follow_the_wavelength_bands() -> None:
    scaling = RopeScaling("llama3", 8.0, 1.0, 4.0, 8192)
    factors = llama3_rope_factors(500000.0, 128, scaling)
    wavelen = 2 * np.pi * 500000.0 ** (np.arange(0, 128, 2) / 128)
    assert np.all(factors[wavelen < 8192 / 4] == 1.0)  # short wavelengths untouched
    assert np.allclose(factors[wavelen > 8192], 8.0)  # long ones slowed by `factor`
    between = (wavelen >= 8192 / 4) & (wavelen <= 8192)
    assert between.any() and np.all((factors[between] >= 1) & (factors[between] <= 8))
    assert np.all(np.diff(factors) >= 0)


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize(
    ("name", "pre", "bos", "eos", "add_bos"),
    [
        ("tiny-llama", "smollm", "<|im_start|>", "<|im_end|>", False),
        ("tiny-llama-tied", "llama-bpe", "<|begin_of_text|>", "<|im_end|>", True),
    ],
)
def test_tokenizer_metadata(
    converted: dict[tuple[str, str], Path],
    name: str,
    pre: str,
    bos: str,
    eos: str,
    add_bos: bool,
) -> None:
    kv = gguf_kv(converted[(name, "f16")])
    source = json.loads((MODELS[name] / "tokenizer.json").read_text())
    tokens = kv["tokenizer.ggml.tokens"]
    assert kv["tokenizer.ggml.model"] == "gpt2"
    assert kv["tokenizer.ggml.pre"] == pre
    assert {i: tokens[i] for i in source["model"]["vocab"].values()} == {
        i: t for t, i in source["model"]["vocab"].items()
    }
    assert tokens[384] == "[[tool]]"
    assert kv["tokenizer.ggml.merges"] == [" ".join(m) for m in source["model"]["merges"]]
    assert tokens[kv["tokenizer.ggml.bos_token_id"]] == bos
    assert tokens[kv["tokenizer.ggml.eos_token_id"]] == eos
    assert kv["tokenizer.ggml.add_bos_token"] is add_bos
    assert kv["tokenizer.ggml.add_eos_token"] is False
    assert "<|im_start|>" in kv["tokenizer.chat_template"]


def test_token_types(converted: dict[tuple[str, str], Path]) -> None:
    kv = gguf_kv(converted[("tiny-llama", "f16")])
    types = dict(zip(kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"], strict=True))
    assert types["<|im_start|>"] == types["<|endoftext|>"] == gguf.TokenType.CONTROL
    assert types["[[tool]]"] == gguf.TokenType.USER_DEFINED
    assert types["Ġthe"] == types["a"] == gguf.TokenType.NORMAL


def test_merges_stored_as_strings_are_accepted(tmp_path: Path) -> None:
    model_dir = copy_model(UNTIED, tmp_path)
    data = json.loads((model_dir / "tokenizer.json").read_text())
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    (model_dir / "tokenizer.json").write_text(json.dumps(data))
    as_pairs = gguf_kv(convert_model(UNTIED, tmp_path / "a.gguf").output)
    as_strings = gguf_kv(convert_model(model_dir, tmp_path / "b.gguf").output)
    assert as_strings["tokenizer.ggml.merges"] == as_pairs["tokenizer.ggml.merges"]


def test_transformers4_config_layout_gives_the_same_rope(tmp_path: Path) -> None:
    model_dir = copy_model(TIED, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    config["rope_scaling"] = rope
    (model_dir / "config.json").write_text(json.dumps(config))
    v5 = convert_model(TIED, tmp_path / "a.gguf", out_type="f32").output
    v4 = convert_model(model_dir, tmp_path / "b.gguf", out_type="f32").output
    assert gguf_kv(v4)["llama.rope.freq_base"] == gguf_kv(v5)["llama.rope.freq_base"] == 500000.0
    np.testing.assert_array_equal(
        gguf_tensors(v4)["rope_freqs.weight"].data, gguf_tensors(v5)["rope_freqs.weight"].data
    )


def test_linear_rope_scaling_becomes_gguf_keys(tmp_path: Path) -> None:
    model_dir = copy_model(UNTIED, tmp_path)
    edit_config(model_dir, {"rope_parameters": {"rope_type": "linear", "factor": 4.0}})
    path = convert_model(model_dir, tmp_path / "m.gguf").output
    kv = gguf_kv(path)
    assert (kv["llama.rope.scaling.type"], kv["llama.rope.scaling.factor"]) == ("linear", 4.0)
    assert kv["llama.rope.freq_base"] == 10000.0
    assert "rope_freqs.weight" not in gguf_tensors(path)


# --------------------------------------------------------------------------- errors


def _sentencepiece_only(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").unlink()
    (model_dir / "tokenizer.model").write_bytes(b"\x0a\x00")


BAD_INPUTS: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "architecture",
        config_change({"architectures": ["MixtralForCausalLM"]}),
        r"unsupported architecture 'MixtralForCausalLM'.*BertModel, LlamaForCausalLM",
    ),
    (
        "rope-yarn",
        config_change({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}),
        r"unsupported rope_scaling type 'yarn'",
    ),
    (
        "rope-llama3-incomplete",
        config_change({"rope_parameters": {"rope_type": "llama3", "factor": 8.0}}),
        r"low_freq_factor must be a positive number",
    ),
    (
        "rope-scaling-not-an-object",
        config_change({"rope_parameters": None, "rope_scaling": ["llama3"]}),
        r"rope_scaling must be an object or null",
    ),
    ("hidden-act", config_change({"hidden_act": "gelu"}), r"unsupported Llama hidden_act 'gelu'"),
    (
        "attention-bias",
        config_change({"attention_bias": True}),
        r"attention_bias are not supported",
    ),
    (
        "kv-heads",
        config_change({"num_key_value_heads": 4}),
        r"k_proj.weight' has shape \[32, 64\], expected \[64, 64\]",
    ),
    ("heads", config_change({"num_key_value_heads": 3}), r"not a multiple of num_key_value_heads"),
    ("vocab-size", config_change({"vocab_size": 500}), r"vocab_size 500 but the embedding has 385"),
    ("layers", config_change({"num_hidden_layers": 3}), r"missing 9 tensor\(s\), e.g. 'blk.2."),
    (
        "untied-without-lm-head",
        config_change({"tie_word_embeddings": False}),
        r"missing 1 tensor\(s\), e.g. 'output.weight'",
    ),
    (
        "pre-tokenizer",
        tokenizer_change(
            lambda t: t.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁"})
        ),
        r"unsupported tokenizer pre-tokenizer \{\"type\": \"Metaspace\"",
    ),
    (
        "prefix-space",
        tokenizer_change(
            lambda t: t["pre_tokenizer"]["pretokenizers"][1].update(add_prefix_space=True)
        ),
        r"unsupported tokenizer pre-tokenizer .*Split.*\"ByteLevel\", \"add_prefix_space\": true",
    ),
    (
        "ignore-merges",
        tokenizer_change(lambda t: t["model"].update(ignore_merges=False)),
        r"ignore_merges=False differs from what llama.cpp does for the 'llama-bpe'",
    ),
    (
        "normalizer",
        tokenizer_change(lambda t: t.update(normalizer={"type": "NFC"})),
        r"unsupported normalizer 'NFC'",
    ),
    (
        "byte-fallback",
        tokenizer_change(lambda t: t["model"].update(byte_fallback=True)),
        r"byte_fallback \(SentencePiece-style\) is not supported yet",
    ),
    (
        "wordpiece",
        tokenizer_change(lambda t: t["model"].update(type="WordPiece")),
        r"expected a BPE model, found 'WordPiece'",
    ),
    ("sentencepiece", _sentencepiece_only, r"SentencePiece tokenizers .* not supported yet"),
]
"""Each breaks the tied model (whose config fits every case) in one way."""


@pytest.mark.parametrize(
    ("break_it", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, break_it: Callable[[Path], None], message: str
) -> None:
    assert_refused(tmp_path, TIED, break_it, message)


def test_bos_text_missing_from_vocabulary(tmp_path: Path) -> None:
    model_dir = copy_model(UNTIED, tmp_path)
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"bos_token": "<s>"}))
    with pytest.raises(BadRequestError, match=r"bos_token '<s>' is not in the vocabulary"):
        convert_model(model_dir, tmp_path / "m.gguf")
