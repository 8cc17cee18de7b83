"""Converting a Llama whose tokenizer.json is SentencePiece-style (byte fallback, `<0xXX>`
byte tokens, `▁` for spaces: Llama 2, TinyLlama, Mistral 7B v0.1) to llama.cpp's
SentencePiece tokenizer: its metadata, and clear refusals of what llama.cpp cannot
reproduce. llama.cpp's ids and logits against transformers' are checked with the other
decoders in test_decoders_match_transformers.py.

`tiny-llama-spm/` and `tiny_llama_spm_golden.json` were written by
scripts/make_tiny_llama_spm.py; expectations here come from its tokenizer.json, never from
our converter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gguf import TokenType

from ollamapy.convert import convert_model
from tests.convert.golden_models import (
    TESTDATA,
    assert_refused,
    copy_model,
    edit_tokenizer,
    gguf_kv,
    tokenizer_change,
)

SPM = TESTDATA / "tiny-llama-spm"
TOKENIZER = json.loads((SPM / "tokenizer.json").read_text())
VOCAB: dict[str, int] = TOKENIZER["model"]["vocab"]
MERGES: list[list[str]] = TOKENIZER["model"]["merges"]


@pytest.fixture(scope="module")
def kv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("spm") / "m.gguf"
    return gguf_kv(convert_model(SPM, out).output)


def test_tokenizer_is_llama_cpp_sentencepiece(kv: dict[str, Any]) -> None:
    assert kv["tokenizer.ggml.model"] == "llama"
    assert "tokenizer.ggml.merges" not in kv
    assert kv["tokenizer.ggml.tokens"] == sorted(VOCAB, key=VOCAB.__getitem__)
    roles = {"bos": "bos", "eos": "eos", "unk": "unknown"}
    ids = {role: kv[f"tokenizer.ggml.{key}_token_id"] for role, key in roles.items()}
    assert ids == {"bos": VOCAB["<s>"], "eos": VOCAB["</s>"], "unk": VOCAB["<unk>"]}
    assert kv["tokenizer.ggml.add_bos_token"] is True
    assert kv["tokenizer.ggml.add_eos_token"] is False
    assert kv["tokenizer.ggml.add_space_prefix"] is True


def test_token_types(kv: dict[str, Any]) -> None:
    types = kv["tokenizer.ggml.token_type"]
    expected = {"<unk>": TokenType.UNKNOWN, "<s>": TokenType.CONTROL, "</s>": TokenType.CONTROL}
    expected |= {f"<0x{b:02X}>": TokenType.BYTE for b in range(256)}
    for text, token_id in VOCAB.items():
        assert types[token_id] == expected.get(text, TokenType.NORMAL), text


def test_scores_follow_the_merge_ranks(kv: dict[str, Any]) -> None:
    """A merged token scores minus the rank of its first merge; the rest score 0."""
    first: dict[str, int] = {}
    for rank, (left, right) in enumerate(MERGES):
        first.setdefault(left + right, rank)
    scores = kv["tokenizer.ggml.scores"]
    for text, token_id in VOCAB.items():
        assert scores[token_id] == -float(first.get(text, 0)), text
    assert len(first) > 100


def test_replace_only_normalizer_adds_no_space_prefix(tmp_path: Path) -> None:
    model_dir = copy_model(SPM, tmp_path)
    edit_tokenizer(model_dir, lambda t: t.update(normalizer=t["normalizer"]["normalizers"][1]))
    kv = gguf_kv(convert_model(model_dir, tmp_path / "m.gguf").output)
    assert kv["tokenizer.ggml.add_space_prefix"] is False


def _metaspace(t: dict[str, Any]) -> None:
    t["normalizer"] = None
    t["pre_tokenizer"] = {
        "type": "Metaspace",
        "replacement": "▁",
        "prepend_scheme": "always",
        "split": False,
    }


def _drop_merge(t: dict[str, Any]) -> None:
    """Drop the merge of a token reachable from two tokens: llama.cpp would still form it."""
    t["model"]["merges"].remove(["▁", "t"])


def _split_group(t: dict[str, Any]) -> None:
    """Give a token two merges far apart: no single score orders both."""
    merges = t["model"]["merges"]
    merges.insert(0, ["▁t", "he"])


def _sentencepiece_only(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").unlink()
    (model_dir / "tokenizer.model").write_bytes(b"\x0a\x00")


BAD_INPUTS: list[tuple[str, Callable[[Path], None], str]] = [
    ("metaspace", tokenizer_change(_metaspace), r"Metaspace pre-tokenizer is not supported"),
    (
        "normalizer",
        tokenizer_change(lambda t: t.update(normalizer={"type": "NFKC"})),
        r"unsupported SentencePiece-style normalizer/pre-tokenizer .*NFKC",
    ),
    (
        "missing-byte",
        tokenizer_change(lambda t: t["model"]["vocab"].pop("<0x41>")),
        r"needs all 256 byte tokens; <0x41> and 0 more are missing",
    ),
    ("unk", tokenizer_change(lambda t: t["model"].update(unk_token=None)), r"without an unknown"),
    ("dropout", tokenizer_change(lambda t: t["model"].update(dropout=0.1)), r"option dropout"),
    ("incomplete-merges", tokenizer_change(_drop_merge), r"'▁' \+ 't' make the token '▁t'"),
    (
        "scattered-merges",
        tokenizer_change(_split_group),
        r"merges producing '▁the' are not adjacent",
    ),
    ("sentencepiece-only", _sentencepiece_only, r"tokenizer.model without tokenizer.json"),
]


@pytest.mark.parametrize(
    ("break_it", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_what_llama_cpp_cannot_reproduce_is_refused(
    tmp_path: Path, break_it: Callable[[Path], None], message: str
) -> None:
    assert_refused(tmp_path, SPM, break_it, message)
