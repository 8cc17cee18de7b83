"""Wire types: round trips and rejection of malformed input."""

from __future__ import annotations

from typing import Any

import pytest

from ollamapy.errors import BadRequestError
from ollamapy.runner import launch
from ollamapy.runner import protocol as p
from ollamapy.types.logprobs import TokenLogprob
from ollamapy.types.options import SamplingOptions


def test_completion_request_round_trip() -> None:
    req = p.CompletionRequest(
        prompt="hi",
        options=SamplingOptions(temperature=0.0, stop=("a", "b"), num_predict=5),
        format={"type": "object"},
        stream=False,
    )
    wire = req.to_json()
    assert wire["options"]["stop"] == ["a", "b"]
    assert p.CompletionRequest.from_json(wire) == req


def test_completion_request_carries_logprobs_truncate_and_shift() -> None:
    req = p.CompletionRequest(
        prompt="hi", logprobs=True, top_logprobs=20, truncate=False, shift=False
    )
    assert p.CompletionRequest.from_json(req.to_json()) == req


def test_completion_request_carries_a_trace_budget() -> None:
    budget = p.TraceBudget(64, "<think>", "</think>", opened=True)
    req = p.CompletionRequest(prompt="hi", trace_budget=budget)
    assert req.to_json()["trace_budget"] == {
        "tokens": 64,
        "opening": "<think>",
        "closing": "</think>",
        "opened": True,
    }
    assert p.CompletionRequest.from_json(req.to_json()) == req
    assert "trace_budget" not in p.CompletionRequest(prompt="hi").to_json()
    with pytest.raises(p.ProtocolError):
        p.CompletionRequest.from_json({"prompt": "hi", "trace_budget": {"tokens": 0}})


def test_completion_request_defaults() -> None:
    req = p.CompletionRequest.from_json({"prompt": "x"})
    assert req.options == SamplingOptions()
    assert req.format is None
    assert req.images == ()
    assert req.stream is True


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"prompt": 3},
        {"prompt": "x", "options": {"temperature": "hot"}},
        {"prompt": "x", "format": 5},
        {"prompt": "x", "images": [1]},
        {"prompt": "x", "stream": "no"},
        {"prompt": "x", "logprobs": 1},
        {"prompt": "x", "top_logprobs": 21},
        {"prompt": "x", "top_logprobs": -1},
        {"prompt": "x", "truncate": "no"},
        {"prompt": "x", "shift": 0},
    ],
)
def test_completion_request_rejects(body: Any) -> None:
    with pytest.raises(BadRequestError):
        p.CompletionRequest.from_json(body)


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ({"content": "hé"}, p.CompletionChunk("hé")),
        (
            {
                "content": "é",
                "logprobs": [
                    {
                        "token": "é",
                        "logprob": -0.5,
                        "bytes": [195, 169],
                        "top_logprobs": [
                            {"token": "é", "logprob": -0.5, "bytes": [195, 169]},
                            {"token": "e", "logprob": -1.5, "bytes": [101]},
                        ],
                    }
                ],
            },
            p.CompletionChunk(
                "é",
                (
                    TokenLogprob(
                        "é",
                        -0.5,
                        (195, 169),
                        (TokenLogprob("é", -0.5, (195, 169)), TokenLogprob("e", -1.5, (101,))),
                    ),
                ),
            ),
        ),
        ({"error": "boom"}, p.CompletionError("boom")),
        (
            {
                "done": True,
                "done_reason": "length",
                "prompt_eval_count": 3,
                "prompt_eval_duration": 10,
                "eval_count": 5,
                "eval_duration": 20,
                "tokens": [1, 2],
            },
            p.CompletionDone("length", 3, 10, 5, 20, [1, 2]),
        ),
        (
            {
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 30,
                "prompt_cached_count": 29,
                "prompt_eval_duration": 10,
                "eval_count": 5,
                "eval_duration": 20,
                "tokens": [1, 2],
            },
            p.CompletionDone("stop", 30, 10, 5, 20, [1, 2], prompt_cached_count=29),
        ),
        (
            {
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 3,
                "prompt_eval_duration": 10,
                "eval_count": 5,
                "eval_duration": 20,
                "stop_sequence": "\n\nHuman:",
            },
            p.CompletionDone("stop", 3, 10, 5, 20, stop_sequence="\n\nHuman:"),
        ),
        (
            {
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 30,
                "prompt_eval_duration": 10,
                "eval_count": 5,
                "eval_duration": 20,
                "tokens": [1, 2],
                "draft_count": 12,
                "draft_accepted_count": 9,
            },
            p.CompletionDone("stop", 30, 10, 5, 20, [1, 2], draft_count=12, draft_accepted_count=9),
        ),
        (
            {
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 30,
                "prompt_cached_count": 29,
                "prompt_cached_source": "disk",
                "prompt_eval_duration": 10,
                "eval_count": 5,
                "eval_duration": 20,
                "tokens": [1, 2],
            },
            p.CompletionDone(
                "stop", 30, 10, 5, 20, [1, 2], prompt_cached_count=29, prompt_cached_source="disk"
            ),
        ),
    ],
)
def test_completion_lines(line: dict[str, Any], event: p.CompletionEvent) -> None:
    assert p.parse_completion_line(line) == event
    assert p.parse_completion_line(event.to_json()) == event


@pytest.mark.parametrize(
    "line",
    [
        {"done": True, "done_reason": "tired"},
        {"done": True, "done_reason": "stop", "tokens": ["x"]},
        {"content": "x", "logprobs": {"token": "x"}},
        {"content": "x", "logprobs": [{"token": "x", "logprob": "low"}]},
        {"content": "x", "logprobs": [{"token": "x", "logprob": -1, "bytes": [256]}]},
    ],
)
def test_completion_line_rejects(line: dict[str, Any]) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_completion_line(line)


def test_token_messages_round_trip() -> None:
    assert p.TokenizeRequest.from_json(
        p.TokenizeRequest("x", False).to_json()
    ) == p.TokenizeRequest("x", False)
    assert p.TokenizeResponse.from_json({"tokens": [1, 2]}).tokens == [1, 2]
    assert p.DetokenizeRequest.from_json({"tokens": [3]}).tokens == [3]
    assert p.DetokenizeResponse.from_json({"content": "ab"}).content == "ab"
    with pytest.raises(p.ProtocolError):
        p.DetokenizeRequest.from_json({"tokens": [True]})


def test_info_round_trip_and_missing_field() -> None:
    info = p.RunnerInfo(
        n_ctx=512,
        n_ctx_train=8192,
        n_parallel=2,
        n_vocab=49152,
        n_embd=576,
        add_bos=False,
        description="llama 256M Q4_1",
        size=1,
        n_params=2,
        has_encoder=False,
        embeddings=False,
        gpu_offload=False,
        n_gpu_layers=0,
    )
    assert p.RunnerInfo.from_json(info.to_json()) == info
    wire = info.to_json()
    del wire["n_vocab"]
    with pytest.raises(p.ProtocolError):
        p.RunnerInfo.from_json(wire)


def test_health_and_listening_line() -> None:
    assert p.Health.from_json({"status": "loading", "progress": 0.5}) == p.Health("loading", 0.5)
    line = launch.ListeningLine(port=1234, pid=9)
    assert launch.ListeningLine.from_json(line.to_json()) == line
    with pytest.raises(p.ProtocolError):
        launch.ListeningLine.from_json({"port": 1})


@pytest.mark.parametrize(
    "args",
    [
        launch.LaunchArgs(model="/m.gguf"),
        launch.LaunchArgs(
            model="/m.gguf",
            port=5,
            num_ctx=128,
            num_batch=64,
            num_gpu=0,
            num_thread=3,
            parallel=4,
            use_mmap=False,
            use_mlock=True,
            flash_attention=True,
            kv_cache_type="q8_0",
            embedding=True,
            lora=("/a", "/b"),
            parent_pid=77,
            verbose=True,
            prompt_cache=1 << 30,
            prompt_cache_dir="/store/cache",
        ),
        launch.LaunchArgs(model="/m.gguf", use_mmap=True, flash_attention=False),
        launch.LaunchArgs(model="/m.gguf", draft_max=0),
    ],
)
def test_launch_args_round_trip(args: launch.LaunchArgs) -> None:
    assert launch.LaunchArgs.from_argv(args.to_argv()) == args


def test_a_done_line_without_drafts_has_no_draft_fields() -> None:
    line = p.CompletionDone("stop", 3, 10, 5, 20, [1, 2]).to_json()
    assert "draft_count" not in line and "draft_accepted_count" not in line


def test_the_draft_max_option_reaches_the_runner() -> None:
    request = p.CompletionRequest("hi", options=SamplingOptions(draft_max=0))
    assert p.CompletionRequest.from_json(request.to_json()).options.draft_max == 0
    unset = p.CompletionRequest.from_json(p.CompletionRequest("hi").to_json())
    assert unset.options.draft_max is None
