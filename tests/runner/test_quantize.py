"""The quantizer child: type names, progress from llama.cpp's log, errors as JSON lines.

The real quantization runs through the child process, in tests/llm/test_quantize.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollamapy.errors import BadRequestError
from ollamapy.runner import quantize as q
from ollamapy.runner.launch import QUANTIZE_TYPES, quantize_type_named


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("q8_0", "Q8_0"),
        ("Q4_K_M", "Q4_K_M"),
        ("q4_k_s", "Q4_K_S"),
        ("q4_K", "Q4_K_M"),
        ("f16", "F16"),
    ],
)
def test_type_names_are_case_insensitive(spelling: str, canonical: str) -> None:
    assert quantize_type_named(spelling) == canonical


def test_unsupported_type_names_the_supported_ones() -> None:
    with pytest.raises(BadRequestError) as caught:
        quantize_type_named("q3_K_L")
    assert str(caught.value) == (
        "unsupported quantization type q3_K_L - supported types are F32, F16, Q8_0, Q4_K_S, Q4_K_M"
    )
    assert set(QUANTIZE_TYPES) == {"F32", "F16", "Q8_0", "Q4_K_S", "Q4_K_M"}


def test_progress_counts_a_tensor_once_the_next_one_starts() -> None:
    sent: list[dict[str, Any]] = []
    progress = q.Progress({"a.weight": 100, "b.weight": 300}, sent.append)
    progress.on_log("llama_model_loader: - type  f16:   37 tensors\n")
    progress.on_log("[   1/   2] a.weight                 - [   384,  30522], type =    f16, ")
    progress.on_log("converting to q8_0 .. size =    22.35 MiB ->    11.88 MiB\n")
    progress.on_log("[   2/   2] b.weight                 - [   384,      1], type =    f32, ")
    progress.finish()
    assert sent == [
        {"completed": 0, "total": 400},
        {"completed": 100, "total": 400},
        {"completed": 400, "total": 400},
    ]


def test_usage_error_is_reported_as_a_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert q.main(["only-one"]) == 2
    assert "usage" in json.loads(capsys.readouterr().out)["error"]


def test_a_file_that_is_not_gguf_is_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("not a model")
    assert q.main([str(source), str(tmp_path / "out.gguf"), "q8_0"]) == 1
    assert "GGUF" in json.loads(capsys.readouterr().out)["error"]
    assert not (tmp_path / "out.gguf").exists()
