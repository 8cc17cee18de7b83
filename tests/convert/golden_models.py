"""Shared ground for the decoder conversion tests (Llama, Qwen): the tiny Hugging Face
models in tests/testdata, their transformers-made golden output, and small helpers to read
a converted GGUF or break a copy of a model directory."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import gguf
import httpx
import numpy as np

from ollamapy.convert import OutType, convert_model
from tests.conftest import TESTDATA

ARGMAX_MARGIN = 0.1
"""Positions where Hugging Face's top two logits are closer than this are not compared by
argmax: llama.cpp's logits differ from transformers' by up to ~1.5e-2 on the machine that
made the golden files (so a top-2 gap can move by ~3e-2), another CPU's kernels round
differently, and the golden data has near-ties (margins of 0.017 and 0.046)."""
UNCLEAR_AT_MOST = 3
"""Positions per text allowed below `ARGMAX_MARGIN` (the most any golden text has today),
so the argmax check always covers nearly every position."""


def golden(filename: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TESTDATA / filename).read_text())
    return data


def cases(data: dict[str, Any]) -> list[tuple[str, int]]:
    """(model name, text index) of every golden text, for parametrize."""
    return [(name, i) for name in data["models"] for i in range(len(data["models"][name]))]


def convert_each(models: dict[str, Path], out: Path) -> dict[tuple[str, str], Path]:
    """Every model converted to f32 and f16: {(name, kind): gguf path}."""
    kinds: tuple[OutType, ...] = ("f32", "f16")
    return {
        (name, kind): convert_model(src, out / f"{name}-{kind}.gguf", out_type=kind).output
        for name, src in models.items()
        for kind in kinds
    }


@contextmanager
def loaded_each(converted: dict[tuple[str, str], Path]) -> Iterator[dict[tuple[str, str], Any]]:
    """Every converted GGUF loaded by llama.cpp, freed at the end."""
    from tests.convert import llama_logits

    with ExitStack() as stack:
        yield {key: stack.enter_context(llama_logits.load(p)) for key, p in converted.items()}


def assert_matches_golden(model: Any, case: dict[str, Any], label: str) -> None:
    """llama.cpp's logits for the golden ids against transformers': the last position's
    vector (cosine), and the argmax wherever HF's choice is clear."""
    from tests.convert import llama_logits

    logits = llama_logits.logits(model, case["ids"])
    want = np.asarray(case["last_logits"], dtype=np.float32)
    got = logits[-1]
    cosine = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
    print(f"\n{label}: cosine {cosine:.7f}, max |diff| {np.abs(got - want).max():.2e}")
    assert cosine >= 0.999
    clear = [i for i, margin in enumerate(case["top2_margin"]) if margin >= ARGMAX_MARGIN]
    assert len(clear) >= len(case["argmax"]) - UNCLEAR_AT_MOST
    got_argmax = logits.argmax(axis=-1).tolist()
    assert [got_argmax[i] for i in clear] == [case["argmax"][i] for i in clear]


def gguf_kv(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


def gguf_tensors(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


TensorTable = dict[str, tuple[list[int], str]]
"""Tensor name -> (shape as GGUF lists it, columns first; GGML type name)."""


def decoder_block(q: int, kv: int) -> TensorTable:
    """One block's GGUF tensors in the tiny golden decoders (64 wide, feed-forward 128),
    with `q` query and `kv` key/value rows."""
    return {
        "attn_norm.weight": ([64], "F32"),
        "attn_q.weight": ([64, q], "F16"),
        "attn_k.weight": ([64, kv], "F16"),
        "attn_v.weight": ([64, kv], "F16"),
        "attn_output.weight": ([q, 64], "F16"),
        "ffn_norm.weight": ([64], "F32"),
        "ffn_gate.weight": ([64, 128], "F16"),
        "ffn_up.weight": ([64, 128], "F16"),
        "ffn_down.weight": ([128, 64], "F16"),
    }


def assert_tensor_table(
    converted: dict[tuple[str, str], Path], name: str, top: TensorTable, block: TensorTable
) -> None:
    """The f16 conversion of `name` holds exactly `top` plus `block` in each of its two
    blocks; the f32 conversion holds only F32 tensors."""
    expected = dict(top)
    for i in range(2):
        expected |= {f"blk.{i}.{k}": v for k, v in block.items()}
    got = {
        n: (t.shape.tolist(), t.tensor_type.name)
        for n, t in gguf_tensors(converted[(name, "f16")]).items()
    }
    assert got == expected
    f32 = {t.tensor_type.name for t in gguf_tensors(converted[(name, "f32")]).values()}
    assert f32 == {"F32"}


def copy_model(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def edit_config(model_dir: Path, changes: dict[str, Any]) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(config | changes))


def edit_tokenizer(model_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads((model_dir / "tokenizer.json").read_text())
    edit(data)
    (model_dir / "tokenizer.json").write_text(json.dumps(data))


def create_then_generate(url: str, name: str, model_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """`/api/create` FROM a model directory on a live server, then one short greedy
    `/api/generate` that must finish; returns the create statuses and `/api/show`."""
    created = httpx.post(
        f"{url}/api/create", json={"model": name, "modelfile": f"FROM {model_dir}\n"}, timeout=300
    )
    assert created.status_code == 200, created.text
    statuses = [json.loads(line).get("status") for line in created.text.splitlines()]
    assert "converting model" in statuses and statuses[-1] == "success", statuses
    answer = httpx.post(
        f"{url}/api/generate",
        json={
            "model": name,
            "prompt": "What is the capital of France?",
            "stream": False,
            "options": {"temperature": 0, "seed": 1, "num_predict": 8},
        },
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["done"] is True
    assert isinstance(body["response"], str) and body["eval_count"] >= 1
    shown: dict[str, Any] = httpx.post(f"{url}/api/show", json={"model": name}).json()
    return statuses, shown


Breaker = Callable[[Path], None]
"""Breaks a copied model directory in one way."""


def config_change(changes: dict[str, Any]) -> Breaker:
    return lambda model_dir: edit_config(model_dir, changes)


def tokenizer_change(edit: Callable[[dict[str, Any]], None]) -> Breaker:
    return lambda model_dir: edit_tokenizer(model_dir, edit)


def assert_refused(tmp_path: Path, model: Path, break_it: Breaker, message: str) -> None:
    """A copy of `model`, broken by `break_it`, fails to convert with `message`, and no
    output is left behind."""
    from ollamapy.errors import BadRequestError

    model_dir = copy_model(model, tmp_path)
    break_it(model_dir)
    out = tmp_path / "out"
    try:
        convert_model(model_dir, out / "m.gguf")
    except BadRequestError as refused:
        assert re.search(message, str(refused)), (message, str(refused))
    else:
        raise AssertionError(f"converted although it should be refused ({message})")
    assert not out.exists() or not any(out.iterdir())
