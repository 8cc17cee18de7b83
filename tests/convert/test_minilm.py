"""The real all-MiniLM-L6-v2: llama.cpp on our GGUF must reproduce the numpy oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from ollamapy.convert import ConversionResult
from tests.convert import llama_embed
from tests.convert.reference import ReferenceBert, ReferenceTokenizer, cosine

pytestmark = pytest.mark.integration

SENTENCES = [
    "This is an example sentence.",
    "Each sentence is converted to a vector!",
    "The quick brown fox jumps over the lazy dog, twice (or 3 times?).",
    "Ünïcödé accents, résumé & café — and hyphen-ated words.",
    "Tokenization of hyperparameterised supercalifragilisticexpialidocious embeddings",
    "中文和日本語 mixed with English, plus an emoji 🙂 and numbers 3.14159.",
]
LONG_TEXT = " ".join(["Sentence embeddings compress meaning into vectors."] * 60)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path) -> ReferenceTokenizer:
    return ReferenceTokenizer.from_dir(minilm_dir)


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> ReferenceBert:
    return ReferenceBert(minilm_dir)


@pytest.fixture(scope="module")
def f32_model(minilm_f32: ConversionResult) -> Iterator[llama_embed.LoadedModel]:
    with llama_embed.load(minilm_f32.output) as model:
        yield model


@pytest.fixture(scope="module")
def f16_model(minilm_f16: ConversionResult) -> Iterator[llama_embed.LoadedModel]:
    with llama_embed.load(minilm_f16.output) as model:
        yield model


def test_result_and_metadata(minilm_f16: ConversionResult) -> None:
    assert minilm_f16.source_architecture == "BertModel"
    assert (minilm_f16.context_length, minilm_f16.embedding_length) == (256, 384)
    assert (minilm_f16.block_count, minilm_f16.vocab_size, minilm_f16.pooling) == (6, 30522, "mean")
    reader = gguf.GGUFReader(minilm_f16.output)
    kv = {name: field.contents() for name, field in reader.fields.items()}
    assert kv["general.architecture"] == "bert"
    assert kv["general.name"] == "all-minilm"
    assert kv["bert.context_length"] == 256
    assert kv["bert.attention.head_count"] == 12
    assert kv["bert.feed_forward_length"] == 1536
    assert kv["bert.pooling_type"] == gguf.PoolingType.MEAN
    assert len(reader.tensors) == minilm_f16.tensor_count == 5 + 16 * 6
    assert 40e6 < minilm_f16.size < 50e6  # f16 matrices: about half of the 90 MB f32 checkpoint


def test_llama_cpp_sees_the_model_as_bert(f16_model: llama_embed.LoadedModel) -> None:
    assert f16_model.meta("general.architecture") == "bert"
    assert f16_model.n_ctx_train == 256
    assert f16_model.n_embd == 384


@pytest.mark.parametrize("text", SENTENCES)
def test_tokens_match_reference(
    f16_model: llama_embed.LoadedModel, tokenizer: ReferenceTokenizer, text: str
) -> None:
    assert f16_model.tokenize(text) == tokenizer.encode(text, 256)


@pytest.mark.parametrize(("kind", "threshold"), [("f32", 0.9999), ("f16", 0.999)])
def test_embeddings_match_reference(
    request: pytest.FixtureRequest,
    tokenizer: ReferenceTokenizer,
    reference: ReferenceBert,
    kind: str,
    threshold: float,
) -> None:
    model: llama_embed.LoadedModel = request.getfixturevalue(f"{kind}_model")
    cosines = []
    for text in SENTENCES:
        ids = tokenizer.encode(text, 256)
        cosines.append(cosine(model.embed(ids), reference.embed(ids)))
    print(f"\n{kind} cosines vs numpy reference: min {min(cosines):.7f}, all {cosines}")
    assert min(cosines) >= threshold


def test_long_input_is_truncated_like_sentence_transformers(
    f32_model: llama_embed.LoadedModel, tokenizer: ReferenceTokenizer, reference: ReferenceBert
) -> None:
    full = f32_model.tokenize(LONG_TEXT)
    n_ctx = f32_model.n_ctx_train
    assert len(full) > n_ctx
    truncated = [*full[: n_ctx - 1], full[-1]]  # keep [SEP], as HF truncation does
    want = tokenizer.encode(LONG_TEXT, 256)
    assert len(want) == 256 and truncated == want
    assert cosine(f32_model.embed(truncated), reference.embed(want)) >= 0.9999


def test_embeddings_carry_meaning(
    f16_model: llama_embed.LoadedModel, tokenizer: ReferenceTokenizer
) -> None:
    def embed(text: str) -> np.ndarray:
        return f16_model.embed(f16_model.tokenize(text))

    query = embed("A man is eating food.")
    assert (
        cosine(query, embed("A man is eating a piece of bread."))
        > cosine(query, embed("A man is riding a horse.")) + 0.2
    )
