"""Fixtures for the runner tests: the real model file for `integration` tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.model_files import smollm2_path


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = smollm2_path()
    if path is None:
        pytest.fail("SmolLM2 test model not found: set OLLAMAPY_TEST_SMOLLM2 or fetch the bundle")
    return path
