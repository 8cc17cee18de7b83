"""Every converted tiny decoder (Llama, Llama with tied embeddings and llama3 rope, Llama
with a SentencePiece-style tokenizer, Qwen2, Qwen3, Mistral, Gemma, Phi-3), run by llama.cpp
through our native wrappers, against the golden output that transformers itself produced
(scripts/make_tiny_llama.py, make_tiny_llama_spm.py, make_tiny_qwen.py,
make_tiny_mistral_gemma.py, make_tiny_phi3.py):
the same token ids for every text, and the same logits, in f32 and f16."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.convert.golden_models import (
    TESTDATA,
    assert_matches_golden,
    cases,
    convert_each,
    golden,
    loaded_each,
)

pytestmark = pytest.mark.integration

GOLDEN = {
    name: texts
    for filename in (
        "tiny_llama_golden.json",
        "tiny_llama_spm_golden.json",
        "tiny_qwen_golden.json",
        "tiny_mistral_gemma_golden.json",
        "tiny_phi3_golden.json",
    )
    for name, texts in golden(filename)["models"].items()
}
CASES = cases({"models": GOLDEN})
CASE_IDS = [f"{name}-{i}" for name, i in CASES]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Any]]:
    models = {name: TESTDATA / name for name in GOLDEN}
    with loaded_each(convert_each(models, tmp_path_factory.mktemp("decoders"))) as found:
        yield found


def test_every_golden_model_is_here() -> None:
    assert set(GOLDEN) == {
        "tiny-llama",
        "tiny-llama-tied",
        "tiny-llama-spm",
        "tiny-qwen2",
        "tiny-qwen3",
        "tiny-mistral",
        "tiny-gemma",
        "tiny-phi3",
    }
    assert all(isinstance(path, Path) and path.is_dir() for path in (TESTDATA / n for n in GOLDEN))


@pytest.mark.parametrize(("name", "index"), CASES, ids=CASE_IDS)
def test_llama_cpp_tokenizes_like_hugging_face(
    loaded: dict[tuple[str, str], Any], name: str, index: int
) -> None:
    from tests.convert import llama_logits

    case = GOLDEN[name][index]
    assert llama_logits.tokenize(loaded[(name, "f16")], case["text"]) == case["ids"]


@pytest.mark.parametrize("kind", ["f32", "f16"])
@pytest.mark.parametrize(("name", "index"), CASES, ids=CASE_IDS)
def test_llama_cpp_logits_match_hugging_face(
    loaded: dict[tuple[str, str], Any], name: str, index: int, kind: str
) -> None:
    assert_matches_golden(loaded[(name, kind)], GOLDEN[name][index], f"{name} {kind} #{index}")
