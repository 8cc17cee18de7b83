"""Option checks: types, and the load options no runner can start with (a 400 up front)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ollamapy.errors import BadRequestError
from ollamapy.types import RunnerOptions, validate_options
from ollamapy.types.options import SamplingOptions, parse_option_text

IMPOSSIBLE = {
    "num_ctx=0": {"num_ctx": 0},
    "num_ctx<0": {"num_ctx": -1},
    "num_batch=0": {"num_batch": 0},
    "num_thread<0": {"num_thread": -1},
    "num_gpu<-1": {"num_gpu": -2},
    "main_gpu<0": {"main_gpu": -1},
}

POSSIBLE = {
    "smallest num_ctx": {"num_ctx": 1},
    "automatic threads": {"num_thread": 0},
    "automatic offload": {"num_gpu": -1},
    "no offload": {"num_gpu": 0},
    "sampling options are not load options": {"seed": -1, "num_predict": -2, "top_k": 0},
}


@pytest.mark.parametrize("options", IMPOSSIBLE.values(), ids=IMPOSSIBLE.keys())
def test_impossible_load_options_are_a_bad_request(options: dict[str, Any]) -> None:
    (key,) = options
    with pytest.raises(BadRequestError, match=f"option '{key}' must be"):
        validate_options(options)
    with pytest.raises(BadRequestError, match=f"option '{key}' must be"):
        RunnerOptions.from_options(options)


@pytest.mark.parametrize("options", POSSIBLE.values(), ids=POSSIBLE.keys())
def test_possible_options_pass(options: dict[str, Any]) -> None:
    assert validate_options(options) == options
    RunnerOptions.from_options(options)


def test_the_message_names_the_value_and_what_is_allowed() -> None:
    with pytest.raises(BadRequestError) as caught:
        validate_options({"num_ctx": 0})
    assert caught.value.message == "option 'num_ctx' must be a positive number, got 0"


def test_an_unknown_option_is_logged_on_one_line_whatever_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by schemathesis: option names are the client's; a newline must not forge a line."""
    caplog.set_level(logging.WARNING)
    assert validate_options({"x\ntime=0 level=ERROR msg=forged": 1}) == {}
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert record.getMessage() == "invalid option provided: x\\ntime=0 level=ERROR msg=forged"


def test_draft_max_is_a_request_option_with_a_floor_of_zero() -> None:
    assert validate_options({"draft_max": 0}) == {"draft_max": 0}
    assert SamplingOptions.from_options({"draft_max": 8}).draft_max == 8
    assert SamplingOptions().draft_max is None  # the runner's default applies
    with pytest.raises(BadRequestError, match="option 'draft_max' must be 0"):
        validate_options({"draft_max": -1})
    with pytest.raises(BadRequestError, match="must be of type integer"):
        validate_options({"draft_max": "many"})


def test_draft_max_is_a_modelfile_parameter() -> None:
    assert parse_option_text("draft_max", "24") == 24
