"""Converting a tiny synthesised BERT: mapping, hyper-parameters, vocabulary, errors, numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from ollamapy.convert import ConversionResult, convert_model, detect_architecture
from ollamapy.convert.bert import gguf_tensor_name
from ollamapy.errors import BadRequestError
from tests.convert import llama_embed
from tests.convert.reference import ReferenceBert, ReferenceTokenizer, cosine
from tests.convert.synth import VOCAB, make_tiny_bert, tiny_bert_tensors, tiny_config

N_LAYER = 2


def _kv(reader: gguf.GGUFReader) -> dict[str, Any]:
    return {name: field.contents() for name, field in reader.fields.items()}


def _convert(tmp_path: Path, **kw: Any) -> tuple[ConversionResult, gguf.GGUFReader]:
    out_type = kw.pop("out_type", "f16")
    model_dir = make_tiny_bert(tmp_path / "tiny", **kw)
    result = convert_model(model_dir, tmp_path / "out.gguf", out_type=out_type)
    return result, gguf.GGUFReader(result.output)


def test_detect_architecture(tmp_path: Path) -> None:
    assert detect_architecture(make_tiny_bert(tmp_path / "m")) == "BertModel"


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    config = tiny_config() | {"architectures": ["GPT2LMHeadModel"]}
    model_dir = make_tiny_bert(tmp_path / "m", config=config)
    with pytest.raises(
        BadRequestError,
        match=r"unsupported architecture 'GPT2LMHeadModel'.*BertModel, LlamaForCausalLM",
    ):
        convert_model(model_dir, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_missing_config(tmp_path: Path) -> None:
    model_dir = make_tiny_bert(tmp_path / "m")
    (model_dir / "config.json").unlink()
    with pytest.raises(BadRequestError, match=r"config\.json not found"):
        detect_architecture(model_dir)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"architectures": []}', "architectures"),
    ],
)
def test_bad_config(tmp_path: Path, text: str, message: str) -> None:
    model_dir = make_tiny_bert(tmp_path / "m")
    (model_dir / "config.json").write_text(text)
    with pytest.raises(BadRequestError, match=message):
        detect_architecture(model_dir)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BadRequestError, match="not a directory"):
        detect_architecture(tmp_path / "nowhere")


def test_tensor_mapping_and_storage_types(tmp_path: Path) -> None:
    _, reader = _convert(tmp_path)
    types = {t.name: t.tensor_type for t in reader.tensors}
    expected = {"token_embd.weight", "position_embd.weight", "token_types.weight"}
    expected |= {"token_embd_norm.weight", "token_embd_norm.bias"}
    for i in range(N_LAYER):
        for stem in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down"):
            expected |= {f"blk.{i}.{stem}.weight", f"blk.{i}.{stem}.bias"}
        for stem in ("attn_output_norm", "layer_output_norm"):
            expected |= {f"blk.{i}.{stem}.weight", f"blk.{i}.{stem}.bias"}
    assert set(types) == expected  # pooler and position_ids dropped
    f16 = {n for n, t in types.items() if t == gguf.GGMLQuantizationType.F16}
    matrices = {
        f"blk.{i}.{s}.weight"
        for i in range(N_LAYER)
        for s in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down")
    }
    assert f16 == matrices | {"token_embd.weight"}
    assert all(t == gguf.GGMLQuantizationType.F32 for n, t in types.items() if n not in f16)


def test_tensor_data_and_orientation(tmp_path: Path) -> None:
    source = tiny_bert_tensors()
    _, reader = _convert(tmp_path, out_type="f32")
    data = {t.name: np.asarray(t.data) for t in reader.tensors}
    np.testing.assert_array_equal(
        data["blk.1.ffn_up.weight"], source["encoder.layer.1.intermediate.dense.weight"]
    )
    np.testing.assert_array_equal(
        data["blk.0.attn_k.bias"], source["encoder.layer.0.attention.self.key.bias"]
    )
    np.testing.assert_array_equal(
        data["token_embd_norm.weight"], source["embeddings.LayerNorm.weight"]
    )
    # the position table is cut to the 16-token context
    np.testing.assert_array_equal(
        data["position_embd.weight"], source["embeddings.position_embeddings.weight"][:16]
    )


def test_f16_values_round_to_nearest(tmp_path: Path) -> None:
    source = tiny_bert_tensors()
    _, reader = _convert(tmp_path, out_type="f16")
    got = next(np.asarray(t.data) for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    want = source["encoder.layer.0.attention.self.query.weight"].astype(np.float16)
    np.testing.assert_array_equal(got, want)


def test_hyper_parameters(tmp_path: Path) -> None:
    result, reader = _convert(tmp_path, out_type="f16")
    kv = _kv(reader)
    assert kv["general.architecture"] == "bert"
    assert kv["general.name"] == "tiny"
    assert kv["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    assert kv["bert.context_length"] == 16  # sentence-transformers' max_seq_length wins
    assert kv["bert.embedding_length"] == 32
    assert kv["bert.feed_forward_length"] == 64
    assert kv["bert.block_count"] == N_LAYER
    assert kv["bert.attention.head_count"] == 4
    assert math.isclose(kv["bert.attention.layer_norm_epsilon"], 1e-12, rel_tol=1e-6)
    assert kv["bert.attention.causal"] is False
    assert kv["bert.pooling_type"] == gguf.PoolingType.MEAN
    assert (result.context_length, result.pooling, result.vocab_size) == (16, "mean", len(VOCAB))
    assert result.tensor_count == len(reader.tensors)
    assert result.size == (tmp_path / "out.gguf").stat().st_size


def test_context_falls_back_to_max_position_embeddings(tmp_path: Path) -> None:
    result, reader = _convert(tmp_path, max_seq_length=None, pooling=None, out_type="f32")
    kv = _kv(reader)
    assert kv["bert.context_length"] == 64
    assert kv["general.file_type"] == gguf.LlamaFileType.ALL_F32
    assert "bert.pooling_type" not in kv
    assert result.pooling is None


@pytest.mark.parametrize(
    ("pooling", "want"), [("cls", gguf.PoolingType.CLS), ("last", gguf.PoolingType.LAST)]
)
def test_pooling_types(tmp_path: Path, pooling: str, want: gguf.PoolingType) -> None:
    _, reader = _convert(tmp_path, pooling=pooling)
    assert _kv(reader)["bert.pooling_type"] == want


def test_unsupported_pooling(tmp_path: Path) -> None:
    model_dir = make_tiny_bert(tmp_path / "m")
    (model_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_max_tokens": True})
    )
    with pytest.raises(BadRequestError, match="pooling_mode_max_tokens"):
        convert_model(model_dir, tmp_path / "out.gguf")


@pytest.mark.parametrize("vocab_txt_only", [False, True])
def test_vocabulary(tmp_path: Path, vocab_txt_only: bool) -> None:
    _, reader = _convert(tmp_path, vocab_txt_only=vocab_txt_only)
    kv = _kv(reader)
    tokens, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
    assert kv["tokenizer.ggml.model"] == "bert"
    assert len(tokens) == len(VOCAB)
    assert tokens[VOCAB.index("[CLS]")] == "[CLS]"
    assert tokens[VOCAB.index("cat")] == "\u2581cat"
    assert tokens[VOCAB.index("##s")] == "s"
    assert tokens[VOCAB.index("[unused0]")] == "\u2581[unused0]"
    control = {VOCAB[i] for i, t in enumerate(types) if t == gguf.TokenType.CONTROL}
    assert control == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    ids = {
        role: kv[f"tokenizer.ggml.{key}_token_id"]
        for role, key in [
            ("bos", "bos"),
            ("eos", "eos"),
            ("unk", "unknown"),
            ("sep", "seperator"),
            ("pad", "padding"),
            ("mask", "mask"),
        ]
    }
    assert ids == {"bos": 3, "eos": 4, "unk": 2, "sep": 4, "pad": 0, "mask": 5}
    assert kv["tokenizer.ggml.add_bos_token"] is True
    assert kv["tokenizer.ggml.token_type_count"] == 2


def test_vocabulary_padded_to_embedding_rows(tmp_path: Path) -> None:
    tensors = tiny_bert_tensors()
    tensors["embeddings.word_embeddings.weight"] = np.zeros((len(VOCAB) + 3, 32), np.float32)
    config = tiny_config() | {"vocab_size": len(VOCAB) + 3}
    _, reader = _convert(tmp_path, tensors=tensors, config=config)
    kv = _kv(reader)
    assert kv["tokenizer.ggml.tokens"][-1] == f"[PAD{len(VOCAB) + 2}]"
    assert kv["tokenizer.ggml.token_type"][-1] == gguf.TokenType.UNUSED


def test_missing_tokenizer(tmp_path: Path) -> None:
    model_dir = make_tiny_bert(tmp_path / "m", vocab_txt_only=True)
    (model_dir / "vocab.txt").unlink()
    with pytest.raises(BadRequestError, match=r"no tokenizer\.json or vocab\.txt"):
        convert_model(model_dir, tmp_path / "out.gguf")


def test_missing_tensor(tmp_path: Path) -> None:
    tensors = tiny_bert_tensors()
    del tensors["encoder.layer.1.output.LayerNorm.bias"]
    with pytest.raises(BadRequestError, match=r"missing 1 tensor.*blk\.1\.layer_output_norm\.bias"):
        _convert(tmp_path, tensors=tensors)
    assert not (tmp_path / "out.gguf").exists()


def test_tensor_beyond_the_layer_count(tmp_path: Path) -> None:
    tensors = tiny_bert_tensors(n_layer=3)
    with pytest.raises(BadRequestError, match=r"encoder\.layer\.2.*beyond num_hidden_layers"):
        _convert(tmp_path, tensors=tensors)


def test_wrong_shape(tmp_path: Path) -> None:
    tensors = tiny_bert_tensors()
    tensors["encoder.layer.0.attention.self.query.weight"] = np.zeros((32, 31), np.float32)
    with pytest.raises(BadRequestError, match=r"shape \[32, 31\], expected \[32, 32\]"):
        _convert(tmp_path, tensors=tensors)


def test_unknown_tensor(tmp_path: Path) -> None:
    tensors = tiny_bert_tensors() | {"encoder.layer.0.adapter.weight": np.zeros(2, np.float32)}
    with pytest.raises(
        BadRequestError, match=r"unexpected tensor 'encoder\.layer\.0\.adapter\.weight'"
    ):
        _convert(tmp_path, tensors=tensors)


def test_unsupported_variant(tmp_path: Path) -> None:
    config = tiny_config() | {"position_embedding_type": "relative_key"}
    with pytest.raises(BadRequestError, match="relative_key"):
        _convert(tmp_path, config=config)


def test_bad_out_type(tmp_path: Path) -> None:
    model_dir = make_tiny_bert(tmp_path / "m")
    with pytest.raises(BadRequestError, match="q4_0"):
        convert_model(model_dir, tmp_path / "out.gguf", out_type="q4_0")  # type: ignore[arg-type]


def test_corrupt_checkpoint_leaves_no_output(tmp_path: Path) -> None:
    model_dir = make_tiny_bert(tmp_path / "m")
    (model_dir / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(BadRequestError, match="corrupt safetensors header"):
        convert_model(model_dir, tmp_path / "out.gguf")
    assert list(tmp_path.glob("*.gguf*")) == [] and list(tmp_path.glob(".*")) == []


def test_prefixed_and_legacy_names() -> None:
    assert (
        gguf_tensor_name("bert.encoder.layer.3.output.LayerNorm.gamma")
        == "blk.3.layer_output_norm.weight"
    )
    assert gguf_tensor_name("bert.pooler.dense.weight") is None
    assert gguf_tensor_name("cls.predictions.bias") is None


def test_names_agree_with_gguf_tensor_map() -> None:
    """Cross-check our table against gguf-py's own HF→GGUF map for BERT."""
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, N_LAYER)
    for hf_name in tiny_bert_tensors():
        ours = gguf_tensor_name(hf_name)
        if ours is None:
            continue
        theirs = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert ours == theirs, hf_name


def test_progress_reaches_total(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    model_dir = make_tiny_bert(tmp_path / "m")
    result = convert_model(
        model_dir, tmp_path / "out.gguf", progress=lambda done, total: calls.append((done, total))
    )
    done = [d for d, _ in calls]
    assert len(calls) == result.tensor_count
    assert done == sorted(done) and len(set(done)) == len(done)
    assert calls[-1][0] == calls[-1][1] > 0
    assert len({t for _, t in calls}) == 1


def test_tiny_model_runs_in_llama_cpp_like_the_reference(tmp_path: Path) -> None:
    """End to end without the real model: llama.cpp tokens and embeddings match numpy."""
    model_dir = make_tiny_bert(tmp_path / "m")
    out = convert_model(model_dir, tmp_path / "tiny.gguf", out_type="f32").output
    tokenizer, reference = ReferenceTokenizer.from_dir(model_dir), ReferenceBert(model_dir)
    with llama_embed.load(out) as model:
        assert model.n_ctx_train == 16
        for text in [
            "the cat sat on the mat.",
            "Hello, world!",
            "unbelievable doggy cats",
            "zebra!",
        ]:
            ids = tokenizer.encode(text, 16)
            assert model.tokenize(text) == ids, text
            assert cosine(model.embed(ids), reference.embed(ids)) >= 0.9999, text


def test_interrupted_write_leaves_nothing_behind(tmp_path: Path) -> None:
    model_dir = make_tiny_bert(tmp_path / "m")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "model.gguf").write_bytes(b"previous")

    def stop(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_model(model_dir, out_dir / "model.gguf", progress=stop)
    assert [p.name for p in out_dir.iterdir()] == ["model.gguf"]
    assert (out_dir / "model.gguf").read_bytes() == b"previous"
