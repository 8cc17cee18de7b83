"""The server's handle on the quantizer child, quantizing a real model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ollamapy import gguf
from ollamapy.convert import ConversionResult
from ollamapy.llm.quantize import QuantizeError, quantize
from tests.convert.conftest import minilm_dir, minilm_f16

__all__ = ["minilm_dir", "minilm_f16"]  # session fixtures, re-exported for this module

pytestmark = pytest.mark.integration


def quantizer_children() -> list[int]:
    """Pids of this process's children running the quantizer."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"ollamapy.runner.quantize" in cmdline:
            found.append(int(proc.name))
    return found


def test_quantizes_an_f16_model_to_q8_0_with_progress(
    minilm_f16: ConversionResult, tmp_path: Path
) -> None:
    target = tmp_path / "q8.gguf"
    steps = list(quantize(minilm_f16.output, target, "Q8_0"))
    source = gguf.read_gguf(minilm_f16.output)
    total = sum(t.size for t in source.tensors)
    assert {s.total for s in steps} == {total}
    done = [s.completed for s in steps]
    assert done == sorted(done) and done[0] == 0 and done[-1] == total
    assert len(steps) > len(source.tensors)  # one step per tensor, and the final one
    out = gguf.read_gguf(target)
    assert out.file_type == "Q8_0"
    was_f16 = {t.name for t in source.tensors if t.type == "F16"}
    assert {t.type for t in out.tensors if t.name in was_f16} == {"Q8_0"}
    assert target.stat().st_size < 0.6 * minilm_f16.output.stat().st_size


def test_q4_k_m_keeps_llama_cpp_rules_for_rows_that_do_not_fit_a_k_block(
    minilm_f16: ConversionResult, tmp_path: Path
) -> None:
    target = tmp_path / "q4km.gguf"
    for _ in quantize(minilm_f16.output, target, "Q4_K_M"):
        pass
    out = gguf.read_gguf(target)
    assert out.file_type == "Q4_K_M"
    # MiniLM's 384-wide rows are not a multiple of 256, so llama.cpp falls back per tensor.
    assert {t.type for t in out.tensors if len(t.shape) >= 2} - {"F32"} <= {
        "Q4_K",
        "Q5_0",
        "Q6_K",
        "Q8_0",
        "Q4_0",
        "Q5_1",
        "Q4_1",
    }


def test_failure_raises_with_the_child_reason_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "broken.gguf"
    source.write_bytes(b"GGUF" + b"\x00" * 64)
    target = tmp_path / "out.gguf"
    with pytest.raises(QuantizeError, match="error quantizing model: "):
        list(quantize(source, target, "Q8_0"))
    assert not target.exists()


def test_stopping_early_kills_the_child(minilm_f16: ConversionResult, tmp_path: Path) -> None:
    steps = quantize(minilm_f16.output, tmp_path / "out.gguf", "Q8_0")
    next(steps)
    (child,) = quantizer_children()
    steps.close()
    assert quantizer_children() == []
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed and reaped, not a zombie
