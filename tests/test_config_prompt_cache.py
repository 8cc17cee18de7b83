"""`OLLAMA_PROMPT_CACHE`: a size people write, a modest default, a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamapy.config import PROMPT_CACHE_CAP, Config, default_prompt_cache, parse_size
from ollamapy.errors import BadRequestError


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("2GiB", 2 * 1024**3),
        ("512MB", 512 * 1000**2),
        ("1.5g", int(1.5 * 1024**3)),
        ("64 MiB", 64 * 1024**2),
        ("1000000", 1_000_000),
        ("0", 0),
    ],
)
def test_sizes_read_as_people_write_them(raw: str, size: int) -> None:
    assert parse_size(raw) == size
    assert Config.from_env({"OLLAMA_PROMPT_CACHE": raw}).prompt_cache == size


@pytest.mark.parametrize("raw", ["lots", "2XB", "-1GiB", "nan"])
def test_a_bad_size_is_a_clear_error(raw: str) -> None:
    with pytest.raises(BadRequestError, match="OLLAMA_PROMPT_CACHE"):
        Config.from_env({"OLLAMA_PROMPT_CACHE": raw})


def test_the_default_is_a_tenth_of_ram_at_most_2gib() -> None:
    default = Config.from_env({}).prompt_cache
    assert default == default_prompt_cache()
    assert 0 < default <= PROMPT_CACHE_CAP


def test_the_files_live_in_the_store(tmp_path: Path) -> None:
    config = Config.from_env({"OLLAMA_MODELS": str(tmp_path / "models")})
    assert config.prompt_cache_dir == tmp_path / "models" / "cache"
