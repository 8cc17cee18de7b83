"""Image paths in a prompt (`ollama run model "describe ./photo.png"`) and in the REPL, as
Ollama's CLI finds them for a vision model."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from ollamapy.cli.images import ImageFileError, extract_images, unescape
from ollamapy.cli.show import render_show
from tests.cli.cli_fakes import FakeOllama, Outcome, ndjson
from tests.cli.test_repl import make_repl

Invoke = Callable[..., Outcome]

VISION_SHOW = {
    "modelfile": "FROM m\n",
    "template": "{{ .Prompt }}",
    "details": {"family": "gemma3"},
    "capabilities": ["completion", "vision"],
}


def png(path: Path) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(out, "PNG")
    path.write_bytes(out.getvalue())
    return out.getvalue()


def test_paths_of_existing_images_are_taken_out_of_the_prompt(tmp_path: Path) -> None:
    data = png(tmp_path / "photo.png")
    err = io.StringIO()
    text, images = extract_images(f"describe {tmp_path}/photo.png please", err)
    assert text == "describe  please"
    assert images == [data]
    assert err.getvalue() == f"Added image '{tmp_path}/photo.png'\n"


def test_quoted_and_escaped_paths(tmp_path: Path) -> None:
    data = png(tmp_path / "my photo.PNG")
    escaped = f"{tmp_path}/my\\ photo.PNG"
    assert unescape(escaped) == f"{tmp_path}/my photo.PNG"
    text, images = extract_images(f"what is '{tmp_path}/my photo.PNG'?", io.StringIO())
    assert (text, images) == ("what is ?", [data])
    text, images = extract_images(f"what is {escaped}?", io.StringIO())
    assert (text, images) == ("what is ?", [data])


def test_paths_that_are_not_files_stay_in_the_prompt(tmp_path: Path) -> None:
    prompt = f"the file {tmp_path}/missing.png and a url http://x.org/a.jpg"
    assert extract_images(prompt, io.StringIO()) == (prompt, [])


def test_a_file_that_is_not_an_image_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("just text")
    with pytest.raises(ImageFileError, match="invalid image type"):
        extract_images(f"look at {tmp_path}/notes.png", io.StringIO())


def test_run_sends_the_images_a_one_shot_prompt_names(
    fake: FakeOllama, invoke: Invoke, tmp_path: Path
) -> None:
    data = png(tmp_path / "cat.png")
    fake.routes[("POST", "/api/show")] = httpx.Response(200, json=VISION_SHOW)
    fake.routes[("POST", "/api/generate")] = ndjson({"response": "A cat.", "done": True})
    outcome = invoke("run", "m", f"describe {tmp_path}/cat.png")
    assert outcome.exit_code == 0, outcome.err
    (body,) = fake.bodies("POST", "/api/generate")
    assert body["prompt"] == "describe"
    assert body["images"] == [base64.b64encode(data).decode()]
    assert f"Added image '{tmp_path}/cat.png'" in outcome.err


def test_run_leaves_paths_alone_for_a_text_model(
    fake: FakeOllama, invoke: Invoke, tmp_path: Path
) -> None:
    png(tmp_path / "cat.png")
    show = {**VISION_SHOW, "capabilities": ["completion"]}
    fake.routes[("POST", "/api/show")] = httpx.Response(200, json=show)
    fake.routes[("POST", "/api/generate")] = ndjson({"response": "ok", "done": True})
    assert invoke("run", "m", f"describe {tmp_path}/cat.png").exit_code == 0
    (body,) = fake.bodies("POST", "/api/generate")
    assert body["prompt"] == f"describe {tmp_path}/cat.png" and "images" not in body


def test_the_repl_attaches_images_and_keeps_only_the_newest(
    fake: FakeOllama, tmp_path: Path
) -> None:
    first, second = png(tmp_path / "a.png"), png(tmp_path / "b.jpeg")
    Image.new("RGB", (4, 4), "red").save(tmp_path / "b.jpeg", "JPEG")
    second = (tmp_path / "b.jpeg").read_bytes()
    repl = make_repl(fake, [f"what is {tmp_path}/a.png", "and now?", f"{tmp_path}/b.jpeg this?"])
    repl.opts.multimodal = True
    repl.run()
    chats = fake.bodies("POST", "/api/chat")
    assert chats[0]["messages"][-1] == {
        "role": "user",
        "content": "what is",
        "images": [base64.b64encode(first).decode()],
    }
    assert chats[1]["messages"][0]["images"] == [base64.b64encode(first).decode()]
    last = chats[2]["messages"]
    assert last[-1]["images"] == [base64.b64encode(second).decode()]
    assert last[-1]["content"] == "this?"
    assert all("images" not in m for m in last[:-1])  # earlier images dropped


def test_show_lists_the_projector_of_a_vision_model() -> None:
    shown = {
        **VISION_SHOW,
        "model_info": {"general.architecture": "gemma3", "general.parameter_count": 4_300_000},
        "projector_info": {
            "general.architecture": "clip",
            "general.parameter_count": 419_000_000,
            "clip.vision.embedding_length": 1152,
            "clip.vision.projection_dim": 2560,
        },
    }
    text = render_show(shown)
    projector = text.split("  Projector\n", 1)[1].split("\n\n", 1)[0].split("\n")
    assert [row.split() for row in projector] == [
        ["architecture", "clip"],
        ["parameters", "419M"],
        ["embedding", "length", "1152"],
        ["dimensions", "2560"],
    ]
    assert text.index("  Model\n") < text.index("  Projector\n") < text.index("  Capabilities\n")
