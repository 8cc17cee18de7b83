"""`OLLAMAPY_GPU` in scripts/install.sh: checked before anything is installed (the CUDA
build itself needs an NVIDIA machine and is not run here)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.processes import REPO


def _install(gpu: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMAPY_GPU": gpu, "PATH": "/usr/bin:/bin"}  # no nvcc on it
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ("cuda", "OLLAMAPY_GPU=cuda needs the CUDA toolkit (nvcc on PATH)"),
        ("rocm", "OLLAMAPY_GPU must be cuda or cpu, not rocm"),
    ],
)
def test_the_gpu_switch_is_checked_before_installing(gpu: str, message: str) -> None:
    result = _install(gpu)
    assert (result.returncode, result.stdout, result.stderr.strip()) == (1, "", message)


def test_the_cuda_switch_builds_llama_cpp_with_cuda_for_the_present_gpus() -> None:
    script = (REPO / "scripts" / "install.sh").read_text()
    assert 'CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${archs:-native}' in script
    assert "nvidia-smi --query-gpu=compute_cap" in script
