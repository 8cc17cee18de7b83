"""Vision models end to end: created with their projector, shown with it, and asked about
images through the native API and /v1 with the official clients, on the real engine and
the tiny Gemma 3 of scripts/gen_tiny_vlm.py."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from PIL import Image

from tests.server.conftest import LiveServer, serve_with_model

pytestmark = pytest.mark.integration

VISION = Path(__file__).resolve().parents[1] / "testdata" / "vision"
MODEL, PROJECTOR = VISION / "gemma3.gguf", VISION / "gemma3-mmproj.gguf"
GEMMA_TEMPLATE = (
    "{{- range .Messages }}<start_of_turn>"
    '{{ if eq .Role "user" }}user{{ else }}model{{ end }}\n'
    "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n"
)
MODELFILE = (
    f'FROM {MODEL}\nFROM {PROJECTOR}\nTEMPLATE """{GEMMA_TEMPLATE}"""\n'
    "PARAMETER num_predict 4\nPARAMETER temperature 0\nPARAMETER num_ctx 1024\n"
)
IMAGE_POSITIONS = 256
"""What one image costs Gemma 3 in the context."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_with_model(tmp_path_factory, "tiny-vision", MODELFILE)


def picture(name: str = "gradient") -> bytes:
    return (VISION / f"{name}.png").read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def show(server: LiveServer, name: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/show", json={"model": name}, timeout=30)
    response.raise_for_status()
    shown: dict[str, Any] = response.json()
    return shown


def manifest_media_types(server: LiveServer, name: str) -> list[str]:
    path = server.models_dir / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    return [layer["mediaType"] for layer in json.loads(path.read_text())["layers"]]


def test_two_from_lines_store_the_projector_and_show_reports_vision(server: LiveServer) -> None:
    assert "application/vnd.ollama.image.projector" in manifest_media_types(server, "tiny-vision")
    shown = show(server, "tiny-vision")
    assert "vision" in shown["capabilities"]
    assert shown["projector_info"]["general.architecture"] == "clip"
    assert shown["projector_info"]["clip.has_vision_encoder"] is True
    assert shown["model_info"]["general.architecture"] == "gemma3"
    assert shown["modelfile"].count("\nFROM ") == 2


def test_the_files_map_takes_a_clip_gguf_as_the_projector_in_any_order(
    server: LiveServer,
) -> None:
    client = server.client()
    files = {"mmproj.gguf": client.create_blob(PROJECTOR), "model.gguf": client.create_blob(MODEL)}
    assert client.create(model="from-files", files=files).status == "success"
    types = manifest_media_types(server, "from-files")
    assert types.count("application/vnd.ollama.image.model") == 1
    assert types.count("application/vnd.ollama.image.projector") == 1
    assert show(server, "from-files")["model_info"]["general.architecture"] == "gemma3"


def test_generate_with_an_image_counts_its_positions(server: LiveServer) -> None:
    client = server.client()
    answer = client.generate(model="tiny-vision", prompt="What is this?", images=[picture()])
    assert answer.done and answer.prompt_eval_count is not None
    assert answer.prompt_eval_count > IMAGE_POSITIONS
    text_only = client.generate(model="tiny-vision", prompt="What is this?")
    assert text_only.prompt_eval_count is not None
    assert answer.prompt_eval_count - text_only.prompt_eval_count >= IMAGE_POSITIONS


def test_chat_about_an_image_follows_up_on_it(server: LiveServer) -> None:
    client = server.client()
    first: Any = {"role": "user", "content": "What is this?", "images": [picture("checker")]}
    one = client.chat(model="tiny-vision", messages=[first])
    follow = [first, one.message, {"role": "user", "content": "And its colours?"}]
    two = client.chat(model="tiny-vision", messages=follow)
    assert one.prompt_eval_count is not None and two.prompt_eval_count is not None
    assert two.prompt_eval_count > one.prompt_eval_count > IMAGE_POSITIONS


def test_different_images_give_different_answers(server: LiveServer) -> None:
    client = server.client()
    options = {"num_predict": 1, "temperature": 0}
    answers = {
        name: client.generate(
            model="tiny-vision", prompt="Hi", images=[picture(name)], options=options, logprobs=True
        )
        for name in ("gradient", "checker")
    }
    first, second = (a.logprobs[0].logprob for a in answers.values() if a.logprobs)
    assert first != second


def _bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")


BAD = {
    "not an image": b"hello, world",
    "truncated": picture()[:200],
    "decompression bomb": _bomb(),
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>',
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_images_are_400s_and_the_model_keeps_answering(server: LiveServer, kind: str) -> None:
    client = server.client()
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="tiny-vision", prompt="What is this?", images=[BAD[kind]])
    assert caught.value.status_code == 400 and "image" in caught.value.error
    assert client.generate(model="tiny-vision", prompt="Hi", images=[picture()]).done


def test_images_that_do_not_fit_the_context_are_a_400(server: LiveServer) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        server.client().generate(
            model="tiny-vision", prompt="Hi", images=[picture()], options={"num_ctx": 200}
        )
    assert caught.value.status_code == 400
    assert "does not fit in the context" in caught.value.error


@pytest.mark.parametrize("form", ["data url", "plain base64"])
def test_openai_image_url_parts(server: LiveServer, form: str) -> None:
    data = b64(picture())
    url = f"data:image/png;base64,{data}" if form == "data url" else data
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama")
    content: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    answer = client.chat.completions.create(
        model="tiny-vision", messages=[{"role": "user", "content": content}], max_tokens=2
    )
    assert answer.usage is not None and answer.usage.prompt_tokens > IMAGE_POSITIONS


def test_webp_is_served(server: LiveServer) -> None:
    out = io.BytesIO()
    Image.open(io.BytesIO(picture())).save(out, "WEBP")
    answer = server.client().generate(model="tiny-vision", prompt="Hi", images=[out.getvalue()])
    assert answer.prompt_eval_count is not None and answer.prompt_eval_count > IMAGE_POSITIONS


def test_a_raw_prompt_places_images_at_its_tags(server: LiveServer) -> None:
    client = server.client()
    raw = "<start_of_turn>user\n[img-0] What is this?<end_of_turn>\n<start_of_turn>model\n"
    answer = client.generate(model="tiny-vision", prompt=raw, raw=True, images=[picture()])
    assert answer.prompt_eval_count is not None and answer.prompt_eval_count > IMAGE_POSITIONS


def test_anthropic_image_blocks(server: LiveServer) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=server.url, api_key="ollama")
    image: Any = {"type": "base64", "media_type": "image/png", "data": b64(picture())}
    content: Any = [{"type": "image", "source": image}, {"type": "text", "text": "What?"}]
    answer = client.messages.create(
        model="tiny-vision", max_tokens=2, messages=[{"role": "user", "content": content}]
    )
    used = answer.usage.input_tokens + (answer.usage.cache_read_input_tokens or 0)
    assert used > IMAGE_POSITIONS


def test_responses_input_image_parts(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama")
    content: Any = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{b64(picture())}"},
    ]
    answer = client.responses.create(
        model="tiny-vision",
        input=[{"role": "user", "content": content}],
        max_output_tokens=2,
        store=False,
    )
    assert answer.usage is not None and answer.usage.input_tokens > IMAGE_POSITIONS
