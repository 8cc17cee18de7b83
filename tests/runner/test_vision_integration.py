"""Images through the real engine and llama.cpp's mtmd, on the tiny vision models of
scripts/gen_tiny_vlm.py: the logits after an image match transformers' (golden.json),
images are encoded once and reused as a cached prefix, and bad or oversized images are
400s that leave the engine working."""

from __future__ import annotations

import base64
import io
import json
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from ollamapy.errors import BadRequestError
from ollamapy.runner.app import _check_images_fit
from ollamapy.runner.engine import Engine, Job
from ollamapy.runner.loader import LoadedModel
from ollamapy.runner.native import Context, SamplerChain
from ollamapy.runner.protocol import CompletionDone, CompletionError, CompletionEvent
from ollamapy.runner.sampling import plan_sampler_chain
from ollamapy.runner.vision import ImagePrompt, is_image
from ollamapy.types.options import SamplingOptions
from tests.runner.engines import running_engine

pytestmark = pytest.mark.integration

VISION = Path(__file__).resolve().parents[1] / "testdata" / "vision"
GOLDEN = json.loads((VISION / "golden.json").read_text())
TIMEOUT = 120.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def picture(name: str) -> str:
    return b64((VISION / f"{name}.png").read_bytes())


def cosine(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


class RecordingSampler(SamplerChain):
    """The real sampler chain, keeping the logits of its first sample (the prompt's)."""

    def __init__(self, model: Any, plan: Any, history: list[int]) -> None:
        super().__init__(model, plan, history)
        self.n_vocab = int(model.n_vocab)
        self.first_logits: npt.NDArray[np.float32] | None = None

    def sample(self, ctx: Context, index: int) -> int:
        if self.first_logits is None:
            self.first_logits = ctx.logits(index, self.n_vocab).copy()
        return super().sample(ctx, index)


@dataclass
class Run:
    done: CompletionDone
    logits: npt.NDArray[np.float32]
    layout: ImagePrompt


class Harness:
    def __init__(self, loaded: LoadedModel, engine: Engine, family: str) -> None:
        self.loaded, self.engine, self.family = loaded, engine, family
        self.prompt = GOLDEN["families"][family]["prompt"].replace("<__media__>", "[img-0]")

    @property
    def vision(self) -> Any:
        assert self.loaded.vision is not None
        return self.loaded.vision

    def submit(
        self, images: list[str], prompt: str | None = None, started_ns: int = 0
    ) -> tuple[Job, Any, Any]:
        layout = self.vision.prompt(prompt or self.prompt, images)
        model = self.loaded.model
        options = SamplingOptions(temperature=0.0, num_predict=2)
        plan = plan_sampler_chain(options, n_vocab=model.n_vocab, n_ctx=self.engine.n_ctx)
        sampler = RecordingSampler(model, plan, [t for t in layout.tokens if not is_image(t)])
        events: queue.Queue[CompletionEvent] = queue.Queue()
        job = Job(list(layout.tokens), options, sampler, events.put, images=layout.images)
        job.started_ns = started_ns
        self.engine.submit(job)
        return job, events, layout

    def finish(self, submitted: tuple[Job, Any, Any]) -> Run:
        job, events, layout = submitted
        while True:
            event = events.get(timeout=TIMEOUT)
            if isinstance(event, CompletionError):
                raise AssertionError(event.error)
            if isinstance(event, CompletionDone):
                assert isinstance(job.sampler, RecordingSampler)
                assert job.sampler.first_logits is not None
                return Run(event, job.sampler.first_logits, layout)

    def run(self, images: list[str], prompt: str | None = None) -> Run:
        return self.finish(self.submit(images, prompt))


def _harness(family: str, **launch: Any) -> Iterator[Harness]:
    model = VISION / f"{family}.gguf"
    mmproj = str(VISION / f"{family}-mmproj.gguf")
    with running_engine(model, mmproj=mmproj, **launch) as (loaded, engine):
        yield Harness(loaded, engine, family)


@pytest.fixture(scope="module", params=["gemma3", "smolvlm"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield from _harness(request.param, num_ctx=1024, parallel=2, num_thread=2)


@pytest.mark.parametrize("name", ["gradient", "checker"])
def test_logits_after_an_image_match_transformers(harness: Harness, name: str) -> None:
    golden = GOLDEN["families"][harness.family]["images"][name]
    run = harness.run([picture(name)])
    layout = [None if is_image(t) else t for t in run.layout.tokens]
    assert layout == golden["layout"]
    assert cosine(run.logits, np.array(golden["logits"], dtype=np.float32)) >= 0.999


def test_two_images_give_different_logits(harness: Harness) -> None:
    gradient = harness.run([picture("gradient")]).logits
    checker = harness.run([picture("checker")]).logits
    assert float(np.abs(gradient - checker).max()) > 0.1


def test_image_positions_count_in_prompt_eval_count(harness: Harness) -> None:
    run = harness.run([picture("gradient")])
    images = sum(1 for t in run.layout.tokens if is_image(t))
    assert images >= 64
    assert run.done.prompt_eval_count == len(run.layout.tokens)
    assert all(t >= 0 for t in run.done.tokens)  # `context` holds no image positions


def test_a_second_question_about_the_same_image_reuses_its_encoding(harness: Harness) -> None:
    harness.run([picture("checker")])
    encoded = harness.vision.encoded_count
    follow_up = harness.prompt.replace("What is in", "What colour is")
    second = harness.run([picture("checker")], follow_up)
    assert harness.vision.encoded_count == encoded  # nothing encoded again
    image_end = max(i for i, t in enumerate(second.layout.tokens) if is_image(t)) + 1
    assert second.done.prompt_cached_count >= image_end  # the image's KV was reused


def test_encoding_counts_in_the_prompt_evaluation_time(harness: Harness) -> None:
    """The runner stamps when it began on a prompt's images; that time is the prompt's."""
    began = time.perf_counter_ns() - 10**9  # as if encoding had taken a second
    done = harness.finish(harness.submit([picture("gradient")], started_ns=began)).done
    assert done.prompt_eval_duration >= 10**9


def test_another_image_is_not_mistaken_for_a_cached_one(harness: Harness) -> None:
    first = harness.run([picture("gradient")])
    second = harness.run([picture("checker")])
    image_start = next(i for i, t in enumerate(second.layout.tokens) if is_image(t))
    assert second.done.prompt_cached_count <= image_start
    assert float(np.abs(first.logits - second.logits).max()) > 0.1


def test_two_image_requests_batched_together_answer_as_alone(harness: Harness) -> None:
    unique = harness.prompt.replace("What is in", "Tell me what is in")
    a = harness.submit([picture("gradient")], unique)
    b = harness.submit([picture("checker")], unique.replace("Tell me", "Say"))
    first, second = harness.finish(a), harness.finish(b)
    alone_a = harness.run([picture("gradient")], unique)
    alone_b = harness.run([picture("checker")], unique.replace("Tell me", "Say"))
    assert cosine(first.logits, alone_a.logits) >= 0.9999
    assert cosine(second.logits, alone_b.logits) >= 0.9999
    assert float(np.abs(first.logits - second.logits).max()) > 0.1  # not mixed up


def test_images_that_do_not_fit_the_context_are_a_400(harness: Harness) -> None:
    layout = harness.vision.prompt(harness.prompt, [picture("gradient")])
    with pytest.raises(BadRequestError, match="does not fit in the context"):
        _check_images_fit(layout, n_ctx=len(layout.tokens) - 1, n_batch=512)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, "PNG")
    return out.getvalue()


def _bomb_header() -> bytes:
    """A PNG whose header claims 20,000 x 20,000 pixels (its body is tiny)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


BAD_IMAGES = {
    "not an image": b"hello, world",
    "truncated": _png(64, 64)[:60],
    "decompression bomb": _bomb_header(),
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_bad_images_are_400s_and_the_engine_keeps_working(harness: Harness, kind: str) -> None:
    with pytest.raises(BadRequestError, match="image"):
        harness.vision.prompt(harness.prompt, [b64(BAD_IMAGES[kind])])
    assert harness.run([picture("gradient")]).done.done_reason in ("stop", "length")


def test_webp_and_jpeg_are_served(harness: Harness) -> None:
    image = Image.open(VISION / "gradient.png")
    for fmt in ("WEBP", "JPEG", "GIF"):
        out = io.BytesIO()
        image.save(out, fmt)
        run = harness.run([b64(out.getvalue())])
        assert run.done.prompt_eval_count == len(run.layout.tokens)


def test_an_image_index_past_the_images_is_a_400(harness: Harness) -> None:
    with pytest.raises(BadRequestError, match="invalid image index"):
        harness.vision.prompt("[img-1] hello", [picture("gradient")])
